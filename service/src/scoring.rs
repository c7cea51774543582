//! From the model's raw output to ranked predictions.
//!
//! The ModelStore ResNet-50 outputs logits (its last kernel is dense + bias), which the seed and
//! AWS's own component compared against a "probability" threshold. Here the output is turned
//! into real probabilities with a numerically stable softmax, unless the configuration or the
//! output itself (non-negative, summing to 1 within 1e-3) says it already is a distribution —
//! then applying softmax again would flatten it.

use crate::config::ScoreMode;

/// One class of a ranked answer: the answer's own wire type, so that ranking builds what
/// `POST /classify` sends and nothing copies it field by field.
pub use classify_api::Prediction;

/// Whether the raw output is already a probability distribution.
pub fn looks_like_probabilities(raw: &[f64]) -> bool {
    !raw.is_empty()
        && raw.iter().all(|v| (0.0..=1.0).contains(v))
        && (raw.iter().sum::<f64>() - 1.0).abs() <= 1e-3
}

/// Softmax, shifted by the maximum so that large logits cannot overflow.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Every class, most probable first (ties by index).
pub fn rank(raw: &[f64], labels: &[String], mode: ScoreMode) -> Vec<Prediction> {
    let as_probabilities = match mode {
        ScoreMode::Probabilities => true,
        ScoreMode::Logits => false,
        ScoreMode::Auto => looks_like_probabilities(raw),
    };
    let probabilities = if as_probabilities {
        raw.to_vec()
    } else {
        softmax(raw)
    };
    let mut ranked: Vec<Prediction> = raw
        .iter()
        .zip(probabilities)
        .enumerate()
        .map(|(index, (&logit, probability))| Prediction {
            index,
            label: labels
                .get(index)
                .cloned()
                .unwrap_or_else(|| index.to_string()),
            probability,
            logit,
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then(a.index.cmp(&b.index))
    });
    ranked
}

/// The first `top_k` of a ranking whose probability reaches `threshold`.
pub fn select(ranked: &[Prediction], top_k: usize, threshold: f64) -> Vec<Prediction> {
    ranked
        .iter()
        .take(top_k)
        .filter(|p| p.probability >= threshold)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn logits_get_softmax() {
        let ranked = rank(&[1.0, 3.0, 2.0], &labels(3), ScoreMode::Auto);
        assert_eq!(ranked[0].index, 1);
        let sum: f64 = ranked.iter().map(|p| p.probability).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp()];
        assert!((ranked[0].probability - e[1] / e.iter().sum::<f64>()).abs() < 1e-12);
        assert_eq!(ranked[0].logit, 3.0);
    }

    #[test]
    fn probabilities_are_detected_and_kept() {
        let ranked = rank(&[0.2, 0.7, 0.1], &labels(3), ScoreMode::Auto);
        assert_eq!(ranked[0].probability, 0.7);
        // Forced logits: softmax applies even though it looks like a distribution.
        let forced = rank(&[0.2, 0.7, 0.1], &labels(3), ScoreMode::Logits);
        assert!(forced[0].probability < 0.5);
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let p = softmax(&[1000.0, 999.0]);
        assert!(p.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn top_k_and_threshold() {
        let ranked = rank(&[0.1, 0.6, 0.3], &labels(3), ScoreMode::Probabilities);
        let picked = select(&ranked, 2, 0.0);
        assert_eq!(picked.iter().map(|p| p.index).collect::<Vec<_>>(), [1, 2]);
        let picked = select(&ranked, 5, 0.5);
        assert_eq!(picked.len(), 1);
    }
}
