//! The notebook's `ColorMLP` (3 → 16 GELU → 4 → 16 GELU → 3 sigmoid, 263
//! parameters) by hand, in f32 as PyTorch computes it: the forward pass of one
//! colour, keeping what backward needs, and backward through one row. The
//! loss and its regularizers are [`super::loss`].

use crate::numerics::nn::fast::normal_cdf_pdf;

/// Latent width (the notebook's `E`).
pub const LATENT: usize = 4;
const HIDDEN: usize = 16;

/// (in, out) of the four linear layers.
pub const SHAPES: [(usize, usize); 4] = [(3, HIDDEN), (HIDDEN, LATENT), (LATENT, HIDDEN), (HIDDEN, 3)];

/// Parameters in all.
pub const N_PARAMS: usize = 263;

/// Offsets (weight, bias) of layer `l` in the flat vector.
fn slot(l: usize) -> (usize, usize) {
    let mut at = 0;
    for &(i, o) in &SHAPES[..l] {
        at += i * o + o;
    }
    (at, at + SHAPES[l].0 * SHAPES[l].1)
}

/// `y = x·W + b` for one row (`W` row-major `[in × out]`).
fn linear(p: &[f32], l: usize, x: &[f32], y: &mut [f32]) {
    let (w, b) = slot(l);
    let (i_n, o_n) = SHAPES[l];
    y.copy_from_slice(&p[b..b + o_n]);
    for i in 0..i_n {
        let xi = x[i];
        for (o, yo) in y.iter_mut().enumerate() {
            *yo += xi * p[w + i * o_n + o];
        }
    }
}

/// `g_x += g_y·Wᵀ`, `dW += xᵀ·g_y`, `db += g_y` for one row.
fn linear_back(p: &[f32], l: usize, x: &[f32], gy: &[f32], gx: Option<&mut [f32]>, grad: &mut [f32]) {
    let (w, b) = slot(l);
    let (i_n, o_n) = SHAPES[l];
    for (o, g) in gy.iter().enumerate() {
        grad[b + o] += g;
    }
    for i in 0..i_n {
        for (o, g) in gy.iter().enumerate() {
            grad[w + i * o_n + o] += x[i] * g;
        }
    }
    if let Some(gx) = gx {
        for (i, gxi) in gx.iter_mut().enumerate().take(i_n) {
            let mut s = 0f32;
            for (o, g) in gy.iter().enumerate() {
                s += g * p[w + i * o_n + o];
            }
            *gxi += s;
        }
    }
}

fn gelu(a: &[f32], h: &mut [f32], d: &mut [f32]) {
    for ((av, hv), dv) in a.iter().zip(h.iter_mut()).zip(d.iter_mut()) {
        let (cdf, pdf) = normal_cdf_pdf(*av);
        *hv = av * cdf;
        *dv = cdf + av * pdf;
    }
}

/// One row's activations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    pub x: [f32; 3],
    a1: [f32; HIDDEN],
    h1: [f32; HIDDEN],
    d1: [f32; HIDDEN],
    pub z: [f32; LATENT],
    a3: [f32; HIDDEN],
    h3: [f32; HIDDEN],
    d3: [f32; HIDDEN],
    pub y: [f32; 3],
}

/// The network at `x`: reconstruction and latent, with what backward needs.
pub fn forward(p: &[f32], x: [f32; 3]) -> Row {
    let mut r = Row { x, ..Row::default() };
    linear(p, 0, &r.x, &mut r.a1);
    gelu(&r.a1, &mut r.h1, &mut r.d1);
    linear(p, 1, &r.h1, &mut r.z);
    linear(p, 2, &r.z, &mut r.a3);
    gelu(&r.a3, &mut r.h3, &mut r.d3);
    let mut o = [0f32; 3];
    linear(p, 3, &r.h3, &mut o);
    for (y, o) in r.y.iter_mut().zip(o) {
        *y = 1.0 / (1.0 + (-o).exp());
    }
    r
}

/// Backward through one row: the output gradient `go` (at the sigmoid's
/// input) and the latent's `gz`, accumulated into `grad`.
pub fn backward_row(p: &[f32], r: &Row, go: &[f32; 3], gz: &[f32; LATENT], grad: &mut [f32]) {
    let mut gh3 = [0f32; HIDDEN];
    linear_back(p, 3, &r.h3, go, Some(&mut gh3), grad);
    let ga3: Vec<f32> = gh3.iter().zip(&r.d3).map(|(g, d)| g * d).collect();
    let mut gzr = *gz;
    linear_back(p, 2, &r.z, &ga3, Some(&mut gzr), grad);
    let mut gh1 = [0f32; HIDDEN];
    linear_back(p, 1, &r.h1, &gzr, Some(&mut gh1), grad);
    let ga1: Vec<f32> = gh1.iter().zip(&r.d1).map(|(g, d)| g * d).collect();
    linear_back(p, 0, &r.x, &ga1, None, grad);
}
