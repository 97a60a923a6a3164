//! The convolution's two element-wise loops, quantizing its input and scaling its int32 sums back to
//! float, built a second time for AVX2 and chosen at run time.
//!
//! A release build targets baseline x86-64, where these loops are vectorised four floats wide with
//! SSE2; on an AVX2 CPU the same loops run eight wide. Both builds compute the same operations in the
//! same order (no fused multiply-add), so they give the same bits.

use crate::precision::quantize_linear;

/// `out[i] = quantize_linear(values[i], scale)` as its byte.
pub(super) fn quantize_into(out: &mut [u8], values: &[f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        return unsafe { quantize_avx2(out, values, scale) };
    }
    quantize(out, values, scale)
}

/// `out[i] = sums[i] · scale + bias`.
pub(super) fn rescale_into(out: &mut [f32], sums: &[i32], scale: f32, bias: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        return unsafe { rescale_avx2(out, sums, scale, bias) };
    }
    rescale(out, sums, scale, bias)
}

#[inline(always)]
fn quantize(out: &mut [u8], values: &[f32], scale: f32) {
    for (q, &x) in out.iter_mut().zip(values) {
        *q = quantize_linear(x, scale) as u8;
    }
}

#[inline(always)]
fn rescale(out: &mut [f32], sums: &[i32], scale: f32, bias: f32) {
    for (o, &s) in out.iter_mut().zip(sums) {
        *o = s as f32 * scale + bias;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_avx2(out: &mut [u8], values: &[f32], scale: f32) {
    quantize(out, values, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rescale_avx2(out: &mut [f32], sums: &[i32], scale: f32, bias: f32) {
    rescale(out, sums, scale, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths that leave a remainder after every vector width, and values at every rounding and
    /// saturation edge.
    fn values() -> Vec<f32> {
        let mut values: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.37).collect();
        values.extend([
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            127.4,
            127.6,
            -128.6,
            1e9,
            -1e9,
            f32::NAN,
        ]);
        values
    }

    #[test]
    fn quantizing_gives_onnx_quantize_linear_s_bytes() {
        let values = values();
        let mut out = vec![0u8; values.len()];
        quantize_into(&mut out, &values, 0.5);
        let want: Vec<u8> = values
            .iter()
            .map(|&x| quantize_linear(x, 0.5) as u8)
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn rescaling_gives_the_scaled_sums_bit_for_bit() {
        let sums: Vec<i32> = (0..1013).map(|i| (i - 500) * 40_503).collect();
        let mut out = vec![f32::NAN; sums.len()];
        rescale_into(&mut out, &sums, 3.1e-4, 0.25);
        for (o, &s) in out.iter().zip(&sums) {
            assert_eq!(o.to_bits(), (s as f32 * 3.1e-4 + 0.25).to_bits());
        }
    }
}
