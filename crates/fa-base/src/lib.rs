//! The lowest layer of fa, used by every other: source files and byte spans ([`source`]),
//! files written atomically ([`fsio`]) and the random streams every draw comes from ([`random`]).
//!
//! It depends on no other fa crate and on no libtorch.

pub mod fsio;
pub mod random;
pub mod source;
