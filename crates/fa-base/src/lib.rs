//! The lowest layer of fa, used by every other: source files and byte spans ([`source`]),
//! files written atomically ([`fsio`]) and the counter-based random streams ([`rng`], [`seed`]).
//!
//! It depends on no other fa crate and on no libtorch.

pub mod fsio;
pub mod rng;
pub mod seed;
pub mod source;
