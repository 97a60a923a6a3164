//! The int8 arithmetic of the quantized models we write: ONNX `QuantizeLinear` with zero point 0,
//! and weights with one symmetric scale per output channel. Symmetric, because TensorRT's explicit
//! quantization accepts nothing else and one QDQ file has to run on tract, ONNX Runtime and TensorRT.

/// Largest magnitude a symmetric int8 scale maps its threshold to.
pub const INT8_LIMIT: f32 = 127.0;

/// ONNX `QuantizeLinear` with zero point 0: `x / scale` rounded half to even, saturated to int8.
#[inline]
pub fn quantize_linear(x: f32, scale: f32) -> i8 {
    // Adding 1.5 · 2²³ to a float of magnitude below 2²² rounds it to an integer, half to even
    // (IEEE's default rounding), and leaves that integer in the low bits of the sum's mantissa, two's
    // complement: its low byte is the int8. Every step vectorises; `round_ties_even` is a libm call
    // on baseline x86-64, and a float-to-int8 cast is a scalar conversion per value. NaN is 0, as
    // ONNX's cast gives it.
    const ROUND: f32 = 12_582_912.0;
    let scaled = x / scale;
    let saturated = if scaled.is_nan() { 0.0 } else { scaled }.clamp(-128.0, 127.0);
    (saturated + ROUND).to_bits() as u8 as i8
}

/// Weights as int8 with one scale per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelQuantized {
    /// The int8 weights, in the layout they came in.
    pub values: Vec<i8>,
    /// One scale per output channel: the channel's largest magnitude over 127 (1 for a channel of
    /// zeros, or of weights too small to matter, since ONNX wants a positive scale and a subnormal
    /// one would make subnormal outputs).
    pub scales: Vec<f32>,
}

/// Quantizes finite `weights`, laid out output channel first (`[channels, …]`, as convolutions and
/// linear layers store them), with a symmetric scale per output channel.
///
/// # Panics
/// When `weights` do not split into `channels` equal parts (a caller's shape error).
pub fn quantize_per_channel(weights: &[f32], channels: usize) -> ChannelQuantized {
    assert!(
        channels > 0 && weights.len().is_multiple_of(channels),
        "{} weights do not split into {channels} output channels",
        weights.len()
    );
    let mut quantized = ChannelQuantized {
        values: Vec::with_capacity(weights.len()),
        scales: Vec::with_capacity(channels),
    };
    for channel in weights.chunks(weights.len() / channels) {
        let largest = channel.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if largest >= crate::backend::negligible::NEGLIGIBLE_MAGNITUDE {
            largest / INT8_LIMIT
        } else {
            1.0
        };
        quantized.scales.push(scale);
        quantized
            .values
            .extend(channel.iter().map(|&w| quantize_linear(w, scale)));
    }
    quantized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_linear_rounds_half_to_even_and_saturates() {
        let q = |x| quantize_linear(x, 0.5);
        assert_eq!([q(0.25), q(0.75), q(1.25), q(-0.25)], [0, 2, 2, 0]);
        assert_eq!([q(1000.0), q(-1000.0)], [127, -128]);
    }

    #[test]
    fn quantize_linear_is_the_rounding_onnx_specifies_everywhere() {
        let onnx = |x: f32, scale: f32| (x / scale).round_ties_even().clamp(-128.0, 127.0) as i8;
        // Every quarter step over and beyond the int8 range, and values between.
        for i in -1200..=1200 {
            let x = i as f32 / 4.0;
            assert_eq!(quantize_linear(x, 1.0), onnx(x, 1.0), "{x}");
            let y = x * 0.731 + 0.0001;
            assert_eq!(quantize_linear(y, 0.37), onnx(y, 0.37), "{y}");
        }
        for x in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e30,
            -1e-30,
        ] {
            assert_eq!(quantize_linear(x, 0.1), onnx(x, 0.1), "{x}");
        }
    }

    #[test]
    fn each_channel_gets_its_own_scale_and_its_extreme_maps_to_127() {
        let weights = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 8.0, 2.0, -4.0];
        let q = quantize_per_channel(&weights, 3);
        assert_eq!(q.scales, vec![1.0 / 127.0, 1.0, 8.0 / 127.0]);
        let dead = quantize_per_channel(&[1e-38, -2e-36, 0.5, 1.0], 2);
        assert_eq!(dead.scales, vec![1.0, 1.0 / 127.0]);
        assert_eq!(dead.values, vec![0, 0, 64, 127]);
        assert_eq!(q.values, vec![64, -127, 32, 0, 0, 0, 127, 32, -64]);
        for (channel, (values, scale)) in weights.chunks(3).zip(q.values.chunks(3).zip(&q.scales)) {
            for (w, v) in channel.iter().zip(values) {
                assert!((w - *v as f32 * scale).abs() <= scale / 2.0);
            }
        }
    }

    #[test]
    #[should_panic(expected = "do not split")]
    fn weights_that_do_not_split_into_channels_are_a_caller_error() {
        quantize_per_channel(&[1.0, 2.0, 3.0], 2);
    }
}
