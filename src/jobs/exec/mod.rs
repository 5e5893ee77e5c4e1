//! The `exec` job type (issue 16, in progress: docs/plans/issue-16.md): N workers each run a command as a child
//! process on their executor, restarted when it fails, until each exits 0. This step holds its configuration and
//! its job master's decisions; the worker's work lands with the process service, and only then does the type join
//! [`super::builtin`].

pub mod config;
pub mod logic;
