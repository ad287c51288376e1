//! The registry client's per-blob reports, in the renderer's terms: [`RegistryEvent`]s carried by
//! [`Event::Registry`]. Transport detail (where a resumed download continues) is dropped.

use rbuild_digest::Digest;
use rbuild_registry::{PullEvent, PushEvent};

use crate::progress::{BlobState, Direction, Event, ProgressSink, RegistryEvent};

pub(crate) fn emit(progress: &dyn ProgressSink, ev: RegistryEvent) {
    progress.event(Event::Registry(ev));
}

pub(crate) fn blob(
    progress: &dyn ProgressSink,
    direction: Direction,
    digest: &Digest,
    state: BlobState,
) {
    emit(
        progress,
        RegistryEvent::Blob {
            direction,
            digest: digest.to_string(),
            state,
        },
    );
}

/// A pull or push of `reference` began.
pub(crate) fn started(progress: &dyn ProgressSink, direction: Direction, reference: &str) {
    emit(
        progress,
        RegistryEvent::Started {
            direction,
            reference: reference.to_string(),
        },
    );
}

/// A pull or push of `reference` ended with manifest `digest` and local image `image_id`.
pub(crate) fn finished(
    progress: &dyn ProgressSink,
    direction: Direction,
    reference: String,
    digest: &Digest,
    image_id: &Digest,
) {
    emit(
        progress,
        RegistryEvent::Finished {
            direction,
            reference,
            digest: digest.to_string(),
            image_id: image_id.to_string(),
        },
    );
}

pub(crate) fn pull_event(progress: &dyn ProgressSink, ev: PullEvent) {
    let d = Direction::Pull;
    match ev {
        PullEvent::Started { digest, size } => {
            blob(progress, d, &digest, BlobState::Started { size })
        }
        PullEvent::Progress { digest, done, size } => {
            blob(progress, d, &digest, BlobState::Progress { done, size })
        }
        PullEvent::Retrying {
            digest, attempt, ..
        } => blob(progress, d, &digest, BlobState::Retrying { attempt }),
        PullEvent::Done { digest } => blob(progress, d, &digest, BlobState::Done),
        PullEvent::Skipped { digest } => blob(progress, d, &digest, BlobState::Exists),
        _ => {}
    }
}

pub(crate) fn push_event(progress: &dyn ProgressSink, ev: PushEvent) {
    let d = Direction::Push;
    match ev {
        PushEvent::Started { digest, size } => {
            blob(progress, d, &digest, BlobState::Started { size })
        }
        PushEvent::Progress { digest, done, size } => {
            blob(progress, d, &digest, BlobState::Progress { done, size })
        }
        PushEvent::Done { digest } => blob(progress, d, &digest, BlobState::Done),
        PushEvent::Exists { digest } => blob(progress, d, &digest, BlobState::Exists),
        PushEvent::Mounted { digest, from } => {
            blob(progress, d, &digest, BlobState::Mounted { from })
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::CollectProgress;

    #[test]
    fn client_reports_become_blob_events() {
        let sink = CollectProgress::default();
        let digest = Digest::of(b"x");
        pull_event(&sink, PullEvent::Skipped { digest });
        push_event(
            &sink,
            PushEvent::Mounted {
                digest,
                from: "base/busybox".into(),
            },
        );
        push_event(
            &sink,
            PushEvent::ManifestPushed {
                digest,
                reference: "1".into(),
            },
        );
        let got: Vec<RegistryEvent> = sink
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Registry(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                RegistryEvent::Blob {
                    direction: Direction::Pull,
                    digest: digest.to_string(),
                    state: BlobState::Exists,
                },
                RegistryEvent::Blob {
                    direction: Direction::Push,
                    digest: digest.to_string(),
                    state: BlobState::Mounted {
                        from: "base/busybox".into()
                    },
                },
            ]
        );
    }
}
