//! Access decisions of the door kiosk, from an embedding to a door event: the encrypted SQLite
//! gallery of enrolled people, 1:N matching, the open-set decision policy (accept distance, margin,
//! consensus, tailgating), the events a decision produces and their dispatch to sinks, and the
//! sealed, anchored audit log.
//!
//! It reads embeddings and track identities; it does not see frames, run the network or drive a
//! door.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod audit;
pub mod decision;
pub mod event_store;
pub mod events;
pub mod gallery;
pub mod line_file;
pub mod matcher;
pub mod secret_file;
pub mod vocabulary;

pub use decision::{DecisionConfig, DecisionPolicy, Verdict};
pub use event_store::EventStore;
pub use events::{Event, EventDispatcher, EventKind, EventSink};
pub use gallery::{Gallery, GalleryError, TemplateKey};
pub use matcher::MatchIndex;
