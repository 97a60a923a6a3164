//! Work shared among the threads of tract's executor, for the ops this crate puts into tract's plans.

use rayon::prelude::*;
use tract_linalg::multithread::{current_tract_executor, Executor};

/// `work(index, out_chunk, input_chunk)` over `out` and `input` cut into chunks of `out_len` and
/// `input_len` items, on the executor's threads when it has several.
pub fn on_executor_chunks<O: Send, I: Sync>(
    out: &mut [O],
    out_len: usize,
    input: &[I],
    input_len: usize,
    work: impl Fn(usize, &mut [O], &[I]) + Sync,
) {
    let task = |(index, (out, input)): (usize, (&mut [O], &[I]))| work(index, out, input);
    match current_tract_executor() {
        // One chunk runs where it is: waking the pool for it costs tens of microseconds.
        Executor::MultiThread(pool) if out.len() > out_len => pool.install(|| {
            out.par_chunks_mut(out_len)
                .zip(input.par_chunks(input_len))
                .enumerate()
                .for_each(task)
        }),
        _ => out
            .chunks_mut(out_len)
            .zip(input.chunks(input_len))
            .enumerate()
            .for_each(task),
    }
}

/// Items per task for `len` items: an equal share for each of the executor's threads, and at least
/// `min_items`, below which handing a task to a thread costs more than it saves.
pub fn share_per_thread(len: usize, min_items: usize) -> usize {
    len.div_ceil(executor_threads()).max(min_items)
}

/// How many threads the executor runs work on.
pub fn executor_threads() -> usize {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}
