//! LogME and the (Ledoit-Wolf) H-score against values computed independently by
//! scripts/logme_reference.py (numpy, full-matrix formulas instead of the
//! eigenbasis the Rust code works in) on the same closed-form features.

use attempt_pkg::select::logme::{h_score, logme, Targets};
use nalgebra::DMatrix;

fn features(n: usize, d: usize, shift: f64) -> DMatrix<f64> {
    DMatrix::from_fn(n, d, |i, j| {
        let (i, j) = (i as f64, j as f64);
        (0.37 * i * (j + 1.0) + shift).sin() + 0.25 * (1.3 * j - 0.11 * i).cos()
    })
}

fn close(a: f64, b: f64, what: &str) {
    // Both sides iterate MacKay's updates to convergence (different stopping
    // rules), so they agree to well below this.
    assert!((a - b).abs() < 1e-6, "{what}: {a} vs reference {b}");
}

#[test]
fn logme_and_h_score_match_the_reference_implementation() {
    let n = 60;
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let mut f = features(n, 7, 0.0);
    for i in 0..n {
        f[(i, 0)] += 0.8 * labels[i] as f64;
    }
    let classes = Targets::Classes { labels: labels.clone(), classes: 3 };
    close(logme(&f, &classes).unwrap(), -0.776387814410, "LogME, 3 classes, n > d");
    close(h_score(&f, &classes).unwrap().unwrap(), 0.759318025094, "H-score (Ledoit-Wolf covariance)");
    let scores: Vec<f64> = (0..n).map(|i| 0.5 * (i % 5) as f64 + 0.1 * (i as f64).sin()).collect();
    close(logme(&f, &Targets::Scores(scores)).unwrap(), -1.538956551001, "LogME, regression");
    // Fewer examples than dimensions: the other Gram matrix.
    let wide = features(9, 14, 0.5);
    let wide_labels = Targets::Classes { labels: (0..9).map(|i| i % 2).collect(), classes: 2 };
    close(logme(&wide, &wide_labels).unwrap(), -1.002467378912, "LogME, n < d");
    close(h_score(&wide, &wide_labels).unwrap().unwrap(), 1.953996999482, "H-score, n < d");
}
