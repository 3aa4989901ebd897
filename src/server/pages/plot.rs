//! Small bar charts for the package page, as numbers for the template to
//! draw as inline SVG (so every label goes through the template's escaping,
//! and no script or external image is needed).

/// One bar, in SVG user units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// What the bar stands for (a token index, a source name).
    pub label: String,
    /// Its value, formatted, for the tooltip and the label.
    pub value: String,
    /// Where the label's text starts (attention chart only).
    pub label_y: String,
}

/// A chart ready to draw: its size, its bars and its scale.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    /// The value the full bar length stands for, formatted.
    pub max_label: String,
    /// Where the bars start (the attention chart leaves room for names).
    pub origin: u32,
}

fn units(v: f64) -> String {
    format!("{v:.1}")
}

/// The L2 norm of each prompt token (row), as vertical bars left to right.
pub(crate) fn token_norms(norms: &[f32]) -> Option<Chart> {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 120.0;
    let max = norms.iter().copied().filter(|v| v.is_finite()).fold(0.0f32, f32::max);
    if norms.is_empty() || max <= 0.0 {
        return None;
    }
    let step = WIDTH / norms.len() as f64;
    let gap = if step > 3.0 { 1.0 } else { 0.0 };
    let bars = norms
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let h = if n.is_finite() { f64::from(n / max) * HEIGHT } else { 0.0 };
            Bar {
                x: units(i as f64 * step),
                y: units(HEIGHT - h),
                width: units((step - gap).max(0.5)),
                height: units(h),
                label: format!("token {i}"),
                value: format!("{n:.3}"),
                label_y: String::new(),
            }
        })
        .collect();
    Some(Chart { width: WIDTH as u32, height: HEIGHT as u32, bars, max_label: format!("{max:.3}"), origin: 0 })
}

/// The attention an ATTEMPT run gave each source, as horizontal bars on a
/// 0–1 scale, one row per source.
pub(crate) fn source_attention(weights: &[(String, f64)]) -> Option<Chart> {
    const ROW: f64 = 22.0;
    const LABELS: f64 = 220.0;
    const BARS: f64 = 360.0;
    if weights.is_empty() {
        return None;
    }
    let bars = weights
        .iter()
        .enumerate()
        .map(|(i, (name, w))| {
            let w = if w.is_finite() { w.clamp(0.0, 1.0) } else { 0.0 };
            Bar {
                x: units(LABELS),
                y: units(i as f64 * ROW + 3.0),
                width: units(w * BARS),
                height: units(ROW - 6.0),
                label: name.clone(),
                value: format!("{w:.3}"),
                label_y: units(i as f64 * ROW + ROW - 7.0),
            }
        })
        .collect();
    let height = (weights.len() as f64 * ROW) as u32;
    Some(Chart { width: (LABELS + BARS + 60.0) as u32, height, bars, max_label: "1".into(), origin: LABELS as u32 })
}

/// The `source-attention` provenance entry: `name=weight` pairs separated by `, ` (what `attempt-pkg package
/// --from-run` records for an ATTEMPT run). Malformed pairs are skipped.
pub(crate) fn parse_source_attention(text: &str) -> Vec<(String, f64)> {
    text.split(',')
        .filter_map(|pair| {
            let (name, weight) = pair.trim().rsplit_once('=')?;
            let weight: f64 = weight.trim().parse().ok()?;
            (!name.trim().is_empty() && weight.is_finite()).then(|| (name.trim().to_string(), weight))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_scale_to_the_largest() {
        let chart = token_norms(&[1.0, 2.0, 4.0]).expect("a chart");
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(chart.bars[2].height, "120.0");
        assert_eq!(chart.bars[0].height, "30.0");
        assert_eq!(chart.max_label, "4.000");
        assert!(token_norms(&[]).is_none());
        assert!(token_norms(&[0.0]).is_none());
    }

    #[test]
    fn attention_pairs() {
        let parsed = parse_source_attention("mnli-prompt=0.6, sst2-prompt=0.4, junk, x=nan");
        assert_eq!(parsed, vec![("mnli-prompt".to_string(), 0.6), ("sst2-prompt".to_string(), 0.4)]);
        let chart = source_attention(&parsed).expect("a chart");
        assert_eq!(chart.bars[0].width, "216.0");
    }
}
