//! Blocking on futures from plain threads.

use std::future::Future;

use crate::error::{Error, InternalErrorKind};

/// Runs `future` to completion on the calling thread.
///
/// Refuses to run on a completion-queue thread: the future would wait for an event that
/// only this very thread can deliver.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, Error> {
    if crate::task::on_any_cq_thread() {
        return Err(Error::internal_kind(InternalErrorKind::Misuse,
            "a blocking call was made on a completion-queue thread, where it would deadlock; \
             await the call instead",
        ));
    }
    Ok(futures_executor::block_on(future))
}
