//! Planted bugs and guard switches (simulation build only): see [`crate::core::planted`], where the list lives so
//! that the pure core can hold a switch too.

pub use crate::core::planted::{Planted, Plants};
