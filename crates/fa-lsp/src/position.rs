//! Byte offsets into a source text to the protocol's positions (line, UTF-16 code unit)
//! and back; `.fa` comments may hold any Unicode, so columns are never byte counts.

use lsp_types::{Position, Range};

/// The position of byte `offset` in `text`; an offset past the end or inside a character
/// is moved back to the nearest character boundary.
pub fn position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let character = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, character as u32)
}

/// The range of bytes `start..end` in `text`.
pub fn range(text: &str, start: usize, end: usize) -> Range {
    Range::new(position(text, start), position(text, end.max(start)))
}

/// The byte offset of `position` in `text`. A line past the end gives the end of the text;
/// a column past the end of its line gives the end of that line (before its newline), as
/// the protocol asks.
pub fn offset(text: &str, position: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..position.line {
        match text[line_start..].find('\n') {
            Some(newline) => line_start += newline + 1,
            None => return text.len(),
        }
    }
    let mut units = 0u32;
    for (index, character) in text[line_start..].char_indices() {
        if character == '\n' || units >= position.character {
            return line_start + index;
        }
        units += character.len_utf16() as u32;
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    // "é" is 2 bytes and 1 UTF-16 unit; "𝔽" is 4 bytes and 2 UTF-16 units (a surrogate
    // pair); "→" is 3 bytes and 1 unit.
    const TEXT: &str = "// é𝔽 → note\nencoder f = mlp(8)\r\n  x = f // ü\n";

    #[test]
    fn columns_count_utf16_units_after_non_ascii_comments() {
        // Line 0: "// é𝔽 → note": `→` starts after "// " (3) + é (1) + 𝔽 (2) + " " (1) = 7.
        let arrow = TEXT.find('→').unwrap();
        assert_eq!(arrow, 3 + 2 + 4 + 1);
        assert_eq!(position(TEXT, arrow), Position::new(0, 7));
        assert_eq!(offset(TEXT, Position::new(0, 7)), arrow);
        // `note` is after the arrow (1 unit) and a space.
        let note = TEXT.find("note").unwrap();
        assert_eq!(position(TEXT, note), Position::new(0, 9));
        // Line 1 starts after the first newline; `mlp` at column 12.
        let mlp = TEXT.find("mlp").unwrap();
        assert_eq!(position(TEXT, mlp), Position::new(1, 12));
        assert_eq!(offset(TEXT, Position::new(1, 12)), mlp);
        // After a CRLF line, line 2 counts from the byte after '\n'.
        let x = TEXT.find("x =").unwrap();
        assert_eq!(position(TEXT, x), Position::new(2, 2));
        let u = TEXT.find('ü').unwrap();
        assert_eq!(position(TEXT, u + 2), Position::new(2, 12));
    }

    #[test]
    fn every_boundary_round_trips_and_out_of_range_positions_clamp() {
        for (index, _) in TEXT.char_indices() {
            assert_eq!(offset(TEXT, position(TEXT, index)), index, "offset {index}");
        }
        // Inside the 4-byte character: back to its start.
        let double = TEXT.find('𝔽').unwrap();
        assert_eq!(position(TEXT, double + 2), position(TEXT, double));
        // A column past the line's end stops before its newline; a line past the end of the
        // text gives the text's length.
        let newline = TEXT.find('\n').unwrap();
        assert_eq!(offset(TEXT, Position::new(0, 500)), newline);
        assert_eq!(offset(TEXT, Position::new(40, 0)), TEXT.len());
        assert_eq!(position(TEXT, 10_000), Position::new(3, 0));
    }
}
