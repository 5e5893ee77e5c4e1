//! Panics in hosted code, caught where it is polled: a job type's bug fails its task (and, in a worker's work, is
//! reported as a retryable failure, counted and bounded like any other), never its executor, and a task that
//! panicked is never left listed as running.
//!
//! A broken runtime invariant ([`crate::core::invariants::Violation`], debug and simulation builds) is not caught:
//! it goes on unwinding, so the simulator still fails the run that broke it.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::core::invariants::Violation;

/// A future whose panics become `Err(message)`.
pub struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

/// Runs `f`, turning a panic into `Err` with its message.
pub fn catch_panic<F: Future>(f: F) -> CatchPanic<F> {
    CatchPanic { inner: Box::pin(f) }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) if payload.is::<Violation>() => resume_unwind(payload),
            Err(payload) => Poll::Ready(Err(message(payload.as_ref()))),
        }
    }
}

/// A panic's message (`&str` and `String` payloads; anything else is named as such).
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a payload that is no text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let panicking = async {
            tokio::task::yield_now().await;
            panic!("boom at {}", 3)
        };
        assert_eq!(catch_panic(panicking).await, Err::<(), _>("boom at 3".to_owned()));
    }

    // The production runtime only: the simulator ends the whole run on a task's panic, as it should on a violation.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_violation_is_not_caught() {
        let violation = async {
            crate::core::invariants::stop(Violation::new(
                crate::core::invariants::Rule::MachineInvariant,
                crate::core::time::Time::ZERO,
                "broken",
            ))
        };
        let outer = tokio::spawn(catch_panic(violation)).await.expect_err("a violation is not caught");
        assert!(outer.into_panic().is::<Violation>());
    }
}
