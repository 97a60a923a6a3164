//! Appending lines to files that readers (and the next start) must never find half-written.

use std::fs::File;
use std::io::Write;

/// Appends `line` (newline included) to `file`, whose length is `length`, and flushes it to disk. A
/// write that fails half-way (a full disk) is cut back to `length`, so no fragment is left for the
/// next line to be glued to; `length` grows only by lines that were written whole.
pub fn append_whole_line(file: &mut File, length: &mut u64, line: &[u8]) -> std::io::Result<()> {
    let written = file.write_all(line).and_then(|()| file.sync_data());
    if let Err(error) = written {
        if let Err(cut) = file.set_len(*length) {
            log::error!("cutting back a failed write: {cut}");
        }
        return Err(error);
    }
    *length += line.len() as u64;
    Ok(())
}
