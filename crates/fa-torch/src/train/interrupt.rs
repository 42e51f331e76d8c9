//! Stopping a run cleanly: the first SIGINT or SIGTERM asks the loop to stop at the next step
//! boundary (it writes a checkpoint and says how to resume); a second one ends the process
//! at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The flag the handlers set and the number of the signal that set it.
struct Requested {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

static REQUESTED: OnceLock<Requested> = OnceLock::new();

/// Installs the handlers of SIGINT and SIGTERM once per process. Until then (a library
/// caller, a test), [`requested`] never reports a stop and signals keep their default action.
pub fn install() {
    REQUESTED.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            use signal_hook::flag;
            for number in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as the previous signal left it: a
                // second signal exits at once, with the shell's code for death by signal.
                let _ = flag::register_conditional_shutdown(number, 128 + number, stop.clone());
                let _ = flag::register_usize(number, signal.clone(), number as usize);
                let _ = flag::register(number, stop.clone());
            }
        }
        Requested { stop, signal }
    });
}

/// The name and number of the signal that asked the run to stop, if one did.
pub fn requested() -> Option<(&'static str, i32)> {
    let requested = REQUESTED.get()?;
    if !requested.stop.load(Ordering::SeqCst) {
        return None;
    }
    let number = requested.signal.load(Ordering::SeqCst) as i32;
    Some((name(number), number))
}

fn name(number: i32) -> &'static str {
    match number {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}
