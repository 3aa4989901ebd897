//! Evaluation metrics: accuracy, binary F1 (positive class = label index 1),
//! macro-F1, Matthews correlation, Pearson and Spearman (average ranks for ties).

use serde::{Deserialize, Serialize};

use super::Label;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Accuracy,
    F1,
    MacroF1,
    Matthews,
    Pearson,
    Spearman,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::MacroF1 => "macro-f1",
            Metric::Matthews => "matthews",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Model outputs for a split.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    Classes(Vec<usize>),
    Scores(Vec<f32>),
}

/// Compute `metric` of `preds` against `gold`. Returns NaN where the metric
/// does not apply (e.g. Pearson on class predictions) or is undefined.
pub fn compute(metric: Metric, preds: &Predictions, gold: &[Label]) -> f64 {
    match preds {
        Predictions::Classes(p) => {
            let g: Vec<usize> = gold
                .iter()
                .map(|l| match l {
                    Label::Class(c) => *c,
                    Label::Score(s) => s.round() as usize,
                })
                .collect();
            let classes = p.iter().chain(g.iter()).copied().max().map(|m| m + 1).unwrap_or(0);
            match metric {
                Metric::Accuracy => accuracy(p, &g),
                Metric::F1 => f1_binary(p, &g, 1),
                Metric::MacroF1 => macro_f1(p, &g, classes.max(2)),
                Metric::Matthews => matthews(p, &g, classes.max(2)),
                Metric::Pearson | Metric::Spearman => f64::NAN,
            }
        }
        Predictions::Scores(p) => {
            let x: Vec<f64> = p.iter().map(|v| *v as f64).collect();
            let y: Vec<f64> = gold.iter().map(|l| l.as_score()).collect();
            match metric {
                Metric::Pearson => pearson(&x, &y),
                Metric::Spearman => spearman(&x, &y),
                _ => f64::NAN,
            }
        }
    }
}

pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / pred.len() as f64
}

fn counts(pred: &[usize], gold: &[usize], class: usize) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == class, g == class) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    (tp, fp, fn_)
}

/// F1 of class `positive`; 0 when it is never predicted nor present.
pub fn f1_binary(pred: &[usize], gold: &[usize], positive: usize) -> f64 {
    let (tp, fp, fn_) = counts(pred, gold, positive);
    if tp == 0.0 {
        return 0.0;
    }
    2.0 * tp / (2.0 * tp + fp + fn_)
}

/// Unweighted mean of per-class F1 over `classes` classes.
pub fn macro_f1(pred: &[usize], gold: &[usize], classes: usize) -> f64 {
    (0..classes).map(|c| f1_binary(pred, gold, c)).sum::<f64>() / classes as f64
}

/// Multi-class Matthews correlation (Gorodkin's R_K); equals the usual MCC
/// for two classes. 0 when undefined (a constant prediction).
pub fn matthews(pred: &[usize], gold: &[usize], classes: usize) -> f64 {
    let n = pred.len() as f64;
    let mut conf = vec![vec![0f64; classes]; classes];
    for (&p, &g) in pred.iter().zip(gold) {
        if p < classes && g < classes {
            conf[g][p] += 1.0;
        }
    }
    let correct: f64 = (0..classes).map(|k| conf[k][k]).sum();
    let t: Vec<f64> = (0..classes).map(|k| conf[k].iter().sum()).collect();
    let p: Vec<f64> = (0..classes).map(|k| (0..classes).map(|g| conf[g][k]).sum()).collect();
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let num = correct * n - tp;
    let den = ((n * n - p.iter().map(|x| x * x).sum::<f64>()) * (n * n - t.iter().map(|x| x * x).sum::<f64>())).sqrt();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// Ranks starting at 1; tied values share the average of their ranks.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn classification_metrics_by_hand() {
        // gold: 1 1 1 0 0 0 ; pred: 1 1 0 0 0 1 → tp=2 fp=1 fn=1 tn=2
        let gold = [1, 1, 1, 0, 0, 0];
        let pred = [1, 1, 0, 0, 0, 1];
        close(accuracy(&pred, &gold), 4.0 / 6.0);
        close(f1_binary(&pred, &gold, 1), 2.0 / 3.0);
        // class 0: tp=2 fp=1 fn=1 → 2/3 as well
        close(macro_f1(&pred, &gold, 2), 2.0 / 3.0);
        // MCC = (tp·tn − fp·fn)/√((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4−1)/√(3·3·3·3) = 1/3
        close(matthews(&pred, &gold, 2), 1.0 / 3.0);
        close(matthews(&[0, 0, 0], &[0, 1, 0], 2), 0.0);
    }

    #[test]
    fn macro_f1_three_classes() {
        // gold 0 0 1 1 2 2, pred 0 1 1 1 2 0
        // c0: tp1 fp1 fn1 → .5 ; c1: tp2 fp1 fn0 → .8 ; c2: tp1 fp0 fn1 → 2/3
        let v = macro_f1(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 3);
        close(v, (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
    }

    #[test]
    fn correlations_by_hand() {
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0);
        // x=[1,2,3,4], y=[1,3,2,4]: means 2.5; sxy=2.25+.25*-1... computed: (−1.5·−1.5)+(−.5·.5)+(.5·−.5)+(1.5·1.5)=4; sxx=syy=5 → .8
        close(pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]), 0.8);
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // With ties: ranks x=[1,2.5,2.5,4], y=[1,2,3,4] → pearson of those.
        let rx = [1.0, 2.5, 2.5, 4.0];
        let ry = [1.0, 2.0, 3.0, 4.0];
        close(spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]), pearson(&rx, &ry));
        // that value by hand: sxy = 2.25+0+0+2.25=4.5, sxx=2.25+0+0+2.25=4.5, syy=5 → 4.5/√(22.5)
        close(pearson(&rx, &ry), 4.5 / 22.5f64.sqrt());
    }
}
