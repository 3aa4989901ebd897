//! Evidence-based transferability scores of fixed features for a labelled
//! target: LogME (You et al., ICML 2021) and the H-score (Bao et al., 2019).
//!
//! Written here rather than taken from a crate: no Rust crate implements
//! either estimator, and both are a few lines of linear algebra on top of one
//! symmetric eigendecomposition, which `nalgebra` provides.
//!
//! LogME treats each class indicator (or the regression target) as the output
//! of a Bayesian linear model `y = F w + ε`, `w ~ N(0, α⁻¹ I)`,
//! `ε ~ N(0, β⁻¹ I)`, maximises the marginal likelihood (evidence) over α and
//! β with MacKay's fixed-point updates, and reports the maximum log evidence
//! per example, averaged over classes. Higher means the features explain the
//! labels better with a simple model. Everything runs on the eigenvalues of
//! the D×D Gram matrix `FᵀF` (or the N×N one when N < D), computed once and
//! shared by every class.

use anyhow::{bail, Result};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// What the features should predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class index per example, with the number of classes.
    Classes { labels: Vec<usize>, classes: usize },
    /// A real-valued score per example (regression).
    Scores(Vec<f64>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Scores(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns LogME fits one model each for: class indicators, or the scores.
    fn columns(&self) -> Vec<DVector<f64>> {
        match self {
            Targets::Classes { labels, classes } => (0..*classes)
                .map(|k| DVector::from_iterator(labels.len(), labels.iter().map(|&l| if l == k { 1.0 } else { 0.0 })))
                .collect(),
            Targets::Scores(s) => vec![DVector::from_column_slice(s)],
        }
    }

    /// The same targets restricted to (and repeated as) `rows`.
    pub fn subset(&self, rows: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, classes } => {
                Targets::Classes { labels: rows.iter().map(|&i| labels[i]).collect(), classes: *classes }
            }
            Targets::Scores(s) => Targets::Scores(rows.iter().map(|&i| s[i]).collect()),
        }
    }

    /// Refuse targets LogME cannot say anything about.
    pub fn check(&self, rows: usize) -> Result<()> {
        if self.len() != rows {
            bail!("{} labels for {rows} feature rows", self.len());
        }
        match self {
            Targets::Classes { labels, classes } => {
                if *classes < 2 {
                    bail!("a classification target needs at least two classes");
                }
                if let Some(l) = labels.iter().find(|&&l| l >= *classes) {
                    bail!("label {l} is out of range for {classes} classes");
                }
                let present = (0..*classes).filter(|k| labels.contains(k)).count();
                if present < 2 {
                    bail!("the sample has examples of {present} class(es); scoring needs at least two");
                }
            }
            Targets::Scores(s) => {
                if s.iter().any(|v| !v.is_finite()) {
                    bail!("regression targets must be finite numbers");
                }
            }
        }
        Ok(())
    }
}

/// Row-major `n × d` features as a matrix, in f64.
pub fn feature_matrix(rows: &[Vec<f32>]) -> Result<DMatrix<f64>> {
    let n = rows.len();
    let d = rows.first().map(Vec::len).unwrap_or(0);
    if n == 0 || d == 0 {
        bail!("no features to score");
    }
    if rows.iter().any(|r| r.len() != d) {
        bail!("feature rows differ in width");
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        bail!("features contain NaN or infinite values");
    }
    Ok(DMatrix::from_fn(n, d, |i, j| rows[i][j] as f64))
}

/// Fixed-point iterations per column. MacKay's updates usually converge in a
/// handful, but crawl (hundreds of steps) when the evidence is nearly flat,
/// e.g. with fewer examples than dimensions; each step is O(d).
const MAX_ITERATIONS: usize = 10_000;
/// Added to ‖m‖² and ‖F m − y‖² in the updates, as in the authors' code.
const EPSILON: f64 = 1e-5;
/// Stop when α/β changes by less than this, relatively.
const TOLERANCE: f64 = 1e-10;

/// z = (the eigenvectors)ᵀ Fᵀ y for a target column y.
type Projection<'a> = Box<dyn Fn(&DVector<f64>) -> DVector<f64> + 'a>;

/// LogME of `features` (n × d) for `targets`: the maximum log evidence per
/// example, averaged over the target columns.
pub fn logme(features: &DMatrix<f64>, targets: &Targets) -> Result<f64> {
    let (n, d) = features.shape();
    targets.check(n)?;
    // Eigen-decompose the smaller Gram matrix. With FᵀF = V Σ² Vᵀ the
    // projections z = Vᵀ Fᵀ y carry everything the evidence needs; with
    // F Fᵀ = U Σ² Uᵀ (n < d) they are z_i = σ_i (Uᵀ y)_i. The d − rank
    // directions with σ = 0 still count in the log-determinant below.
    let (sigma2, projections): (Vec<f64>, Projection<'_>) = if n >= d {
        let eig = SymmetricEigen::new(features.tr_mul(features));
        let v = eig.eigenvectors;
        let s: Vec<f64> = eig.eigenvalues.iter().map(|&e| e.max(0.0)).collect();
        (s, Box::new(move |y: &DVector<f64>| v.tr_mul(&features.tr_mul(y))))
    } else {
        let eig = SymmetricEigen::new(features * features.transpose());
        let u = eig.eigenvectors;
        let s: Vec<f64> = eig.eigenvalues.iter().map(|&e| e.max(0.0)).collect();
        let sigma: Vec<f64> = s.iter().map(|e| e.sqrt()).collect();
        (
            s,
            Box::new(move |y: &DVector<f64>| {
                let uy = u.tr_mul(y);
                DVector::from_iterator(uy.len(), uy.iter().zip(&sigma).map(|(a, s)| a * s))
            }),
        )
    };
    let zero_directions = d - sigma2.len().min(d);
    let columns = targets.columns();
    let mut total = 0.0;
    for y in &columns {
        total += column_evidence(&sigma2, &projections(y), y.norm_squared(), n, d, zero_directions);
    }
    Ok(total / columns.len() as f64)
}

/// Maximum log evidence per example for one target column, given the Gram
/// eigenvalues σ², the projections z = Vᵀ Fᵀ y and ‖y‖².
fn column_evidence(sigma2: &[f64], z: &DVector<f64>, y2: f64, n: usize, d: usize, zero_directions: usize) -> f64 {
    let (nf, df) = (n as f64, d as f64);
    // In the eigenbasis the posterior mean is m_i = β z_i / (α + β σ_i²), so
    // ‖m‖² and ‖F m − y‖² are sums over the eigenvalues.
    let terms = |alpha: f64, beta: f64| -> (f64, f64, f64) {
        let mut m2 = 0.0;
        let mut fit = 0.0; // yᵀ F m
        let mut fm2 = 0.0; // ‖F m‖²
        let mut gamma = 0.0;
        for (&s, &zi) in sigma2.iter().zip(z.iter()) {
            let a = alpha + beta * s;
            let mi = beta * zi / a;
            m2 += mi * mi;
            fit += mi * zi;
            fm2 += s * mi * mi;
            gamma += beta * s / a;
        }
        let residual = (y2 - 2.0 * fit + fm2).max(0.0);
        (m2, residual, gamma)
    };
    let (mut alpha, mut beta) = (1.0f64, 1.0f64);
    for _ in 0..MAX_ITERATIONS {
        let (m2, residual, gamma) = terms(alpha, beta);
        // The official code's ε keeps the updates finite where the evidence
        // peaks at w = 0 (α → ∞) or at an exact fit (β → ∞).
        let new_alpha = gamma / (m2 + EPSILON);
        let new_beta = (nf - gamma).max(EPSILON) / (residual + EPSILON);
        let (old, new) = (alpha / beta, new_alpha / new_beta);
        alpha = new_alpha;
        beta = new_beta;
        if ((new - old) / old).abs() < TOLERANCE {
            break;
        }
    }
    let (m2, residual, _) = terms(alpha, beta);
    let log_det: f64 =
        sigma2.iter().map(|&s| (alpha + beta * s).ln()).sum::<f64>() + zero_directions as f64 * alpha.ln();
    let evidence = df / 2.0 * alpha.ln() + nf / 2.0 * beta.ln()
        - nf / 2.0 * (2.0 * std::f64::consts::PI).ln()
        - beta / 2.0 * residual
        - alpha / 2.0 * m2
        - 0.5 * log_det;
    evidence / nf
}

/// H-score tr(Cov(f)⁻¹ Cov(E[f | y])) for classification targets (None for
/// regression, where the class-conditional mean is undefined). Cov(f) is the
/// Ledoit–Wolf shrinkage estimate (as in the regularised H-score of Ibrahim
/// et al., 2022): with fewer examples than dimensions the plain covariance is
/// singular and the score saturates at classes − 1 for any features.
pub fn h_score(features: &DMatrix<f64>, targets: &Targets) -> Result<Option<f64>> {
    let (n, d) = features.shape();
    targets.check(n)?;
    let Targets::Classes { labels, classes } = targets else { return Ok(None) };
    let mean = features.row_mean();
    let centered = DMatrix::from_fn(n, d, |i, j| features[(i, j)] - mean[j]);
    let mut class_means = DMatrix::<f64>::zeros(*classes, d);
    let mut counts = vec![0usize; *classes];
    for (i, &l) in labels.iter().enumerate() {
        counts[l] += 1;
        for j in 0..d {
            class_means[(l, j)] += centered[(i, j)];
        }
    }
    for (k, &c) in counts.iter().enumerate() {
        if c > 0 {
            for j in 0..d {
                class_means[(k, j)] /= c as f64;
            }
        }
    }
    let g = DMatrix::from_fn(n, d, |i, j| class_means[(labels[i], j)]);
    let nf = n as f64;
    let cov_f = shrunk_covariance(&centered);
    let cov_g = g.tr_mul(&g) / nf;
    let eig = SymmetricEigen::new(cov_f);
    // tr(V Λ⁻¹ Vᵀ G) = Σ_i (v_iᵀ G v_i) / λ_i.
    let mut score = 0.0;
    for (i, &lambda) in eig.eigenvalues.iter().enumerate() {
        if lambda > 0.0 {
            let v = eig.eigenvectors.column(i);
            score += (v.transpose() * &cov_g * v)[(0, 0)] / lambda;
        }
    }
    Ok(Some(score))
}

/// Ledoit–Wolf (2004) shrinkage of the covariance of centred rows towards
/// μ·I, μ = tr(S)/d, with the optimal intensity estimated from the data.
fn shrunk_covariance(centered: &DMatrix<f64>) -> DMatrix<f64> {
    let (n, d) = centered.shape();
    let nf = n as f64;
    let s = centered.tr_mul(centered) / nf;
    let mu = s.trace() / d as f64;
    let mut target_gap = s.clone();
    for j in 0..d {
        target_gap[(j, j)] -= mu;
    }
    let delta2 = target_gap.norm_squared();
    // Σ_i ‖x_i x_iᵀ − S‖²_F = Σ_i (‖x_i‖⁴ − 2 x_iᵀ S x_i) + n ‖S‖²_F.
    let xs = centered * &s;
    let mut spread = nf * s.norm_squared();
    for i in 0..n {
        let row = centered.row(i);
        let r2 = row.norm_squared();
        spread += r2 * r2 - 2.0 * row.dot(&xs.row(i));
    }
    let beta2 = (spread / (nf * nf)).min(delta2);
    let shrink = if delta2 > 0.0 { beta2 / delta2 } else { 1.0 };
    let mut out = s * (1.0 - shrink);
    for j in 0..d {
        out[(j, j)] += shrink * mu;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
        // A small deterministic generator: the test needs no rand stream stability.
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        DMatrix::from_fn(n, d, |_, _| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    #[test]
    fn both_gram_paths_agree() {
        // n < d and n ≥ d take different eigendecompositions; on the same data
        // padded with zero columns (which change neither fit nor evidence
        // beyond the d/2·log α − ½·log det terms, which cancel for σ = 0) they
        // must agree.
        let f = features(12, 5, 3);
        let labels: Vec<usize> = (0..12).map(|i| i % 3).collect();
        let t = Targets::Classes { labels, classes: 3 };
        let wide = DMatrix::from_fn(12, 20, |i, j| if j < 5 { f[(i, j)] } else { 0.0 });
        let a = logme(&f, &t).unwrap();
        let b = logme(&wide, &t).unwrap();
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn informative_features_score_higher() {
        let n = 200;
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let noise = features(n, 8, 7);
        let informative = DMatrix::from_fn(n, 8, |i, j| noise[(i, j)] + if j == 0 { labels[i] as f64 } else { 0.0 });
        let t = Targets::Classes { labels, classes: 2 };
        assert!(logme(&informative, &t).unwrap() > logme(&noise, &t).unwrap() + 0.05);
        assert!(h_score(&informative, &t).unwrap().unwrap() > h_score(&noise, &t).unwrap().unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_score() {
        let f = features(4, 3, 1);
        let one_class = Targets::Classes { labels: vec![0; 4], classes: 2 };
        assert!(logme(&f, &one_class).unwrap_err().to_string().contains("at least two"));
        let short = Targets::Classes { labels: vec![0, 1], classes: 2 };
        assert!(logme(&f, &short).is_err());
        assert!(feature_matrix(&[vec![1.0, f32::NAN]]).is_err());
        assert_eq!(h_score(&f, &Targets::Scores(vec![0.0, 1.0, 2.0, 3.0])).unwrap(), None);
    }
}
