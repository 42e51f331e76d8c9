//! Training: the loop, checkpoints, metrics, sweep tables and mixed precision.
//!
//! [`train`] runs the loop (`trainer.rs`), one optimiser step at a time (`step.rs`),
//! saving and restoring itself through checkpoints (`resume.rs`), reporting per-epoch
//! statistics (`epoch.rs`) through the progress output (`progress.rs`) and the metrics file,
//! and ends with the evaluation protocols of [`crate::eval`].

pub mod checkpoint;
mod describe;
pub(crate) mod device_data;
mod epoch;
pub(crate) mod error;
pub mod interrupt;
pub mod memory;
pub mod metrics;
pub mod precision;
mod progress;
pub(crate) mod resume;
pub mod run_folder;
mod step;
pub mod stored_model;
mod summary;
pub mod table;
pub mod tensorboard;
pub(crate) mod trainer;

pub use describe::describe;
pub use device_data::{load_split, DeviceData};
pub use epoch::collapse_warning;
pub use error::TrainError;
pub use progress::LogFormat;
pub use resume::load_network;
pub use summary::Summary;
pub use trainer::{train, train_parallel, Parallel, TrainOptions};
