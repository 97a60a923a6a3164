//! The V4L2 camera source on a machine without that camera (feature `camera`): a clear error naming
//! the device, and another attempt on the next call instead of giving up.

#![cfg(feature = "camera")]

use std::time::Duration;

use silhouette::source::{CameraSource, FrameSource, Reconnect, V4l2Camera};

#[test]
fn a_missing_camera_is_named_and_retried() {
    let reconnect = Reconnect {
        first_retry: Duration::from_millis(1),
        max_retry: Duration::from_millis(2),
    };
    let mut source = CameraSource::new(V4l2Camera::new(77), reconnect);
    for _ in 0..3 {
        let error = source.next_frame().unwrap_err().to_string();
        assert!(error.contains("/dev/video77: cannot open"), "{error}");
    }
    assert_eq!(source.describe(), "camera /dev/video77");
}
