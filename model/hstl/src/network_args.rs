//! `--model` and `--threads`, as every command that runs the network takes them (feature `cli`).

use std::path::PathBuf;

use crate::MAX_THREADS;

/// Which model runs, and on how many threads.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NetworkArgs {
    /// The ONNX model (default: the shipped trained model, or `$HSTL_MODEL`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// CPU threads for the network, 1 to 64.
    #[arg(long, default_value_t = 2, value_parser = parse_threads)]
    pub threads: usize,
}

impl NetworkArgs {
    /// The model named, or the shipped one.
    pub fn model_path(&self) -> PathBuf {
        crate::model_or_shipped(self.model.as_deref())
    }
}

/// A thread count from the command line, within 1..=[`MAX_THREADS`].
pub fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(threads) if (1..=MAX_THREADS).contains(&threads) => Ok(threads),
        _ => Err(format!(
            "{text}: give a whole number of threads from 1 to {MAX_THREADS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        network: NetworkArgs,
    }

    #[test]
    fn threads_are_bounded_and_the_model_defaults_to_the_shipped_one() {
        let parsed = Command::try_parse_from(["x"]).unwrap().network;
        assert_eq!(parsed.threads, 2);
        assert_eq!(parsed.model_path(), crate::shipped_model_path());
        let parsed = Command::try_parse_from(["x", "--threads", "64", "--model", "m.onnx"])
            .unwrap()
            .network;
        assert_eq!(
            (parsed.threads, parsed.model_path()),
            (64, PathBuf::from("m.onnx"))
        );
        for refused in ["0", "65", "100000", "two"] {
            let error = Command::try_parse_from(["x", "--threads", refused])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("from 1 to 64"), "{refused}: {error}");
        }
    }
}
