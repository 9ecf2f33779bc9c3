//! Separation metrics for the benchmark: ROC AUC and the true-positive rate at a false-positive
//! budget, where "positive" means a cheat caught (scored below the threshold).

/// P(honest score > attack score), ties counting half.
pub fn auc(honest: &[u16], attack: &[u16]) -> f64 {
    if honest.is_empty() || attack.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &h in honest {
        for &a in attack {
            wins += if h > a {
                1.0
            } else if h == a {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (honest.len() * attack.len()) as f64
}

/// The threshold that flags at most `fpr` of honest scores (a score below it is flagged).
pub fn threshold_at_fpr(honest: &[u16], fpr: f64) -> u16 {
    let mut h = honest.to_vec();
    h.sort_unstable();
    let allowed = (fpr * h.len() as f64).floor() as usize;
    h.get(allowed).copied().unwrap_or(0)
}

/// Fraction of attack scores strictly below `threshold`.
pub fn caught_rate(attack: &[u16], threshold: u16) -> f64 {
    if attack.is_empty() {
        return f64::NAN;
    }
    attack.iter().filter(|&&a| a < threshold).count() as f64 / attack.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_separation() {
        assert_eq!(auc(&[900, 950], &[10, 20]), 1.0);
        assert_eq!(auc(&[10], &[900]), 0.0);
        assert_eq!(auc(&[500], &[500]), 0.5);
    }

    #[test]
    fn threshold_keeps_false_positives_within_budget() {
        let honest: Vec<u16> = (0..200).map(|i| 800 + i).collect();
        let t = threshold_at_fpr(&honest, 0.01);
        assert_eq!(honest.iter().filter(|&&h| h < t).count(), 2);
        assert_eq!(caught_rate(&[100, 801, 803], t), 2.0 / 3.0);
    }
}
