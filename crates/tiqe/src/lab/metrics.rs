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

/// One-sided upper confidence bound (Clopper–Pearson, level `conf`) of a rate observed as
/// `k` events in `n` trials: the largest `p` with `P(X ≤ k | n, p) ≥ 1 − conf`.
pub fn binomial_upper(k: usize, n: usize, conf: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    let cdf = |p: f64| {
        let (lp, lq) = (p.ln(), (1.0 - p).ln());
        let mut log_choose = 0.0;
        let mut sum = 0.0;
        for i in 0..=k {
            if i > 0 {
                log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            sum += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
        }
        sum
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > 1.0 - conf { lo = mid } else { hi = mid }
    }
    hi
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
    fn upper_bound_of_no_events_is_the_rule_of_three() {
        // 0 in n: 1 − 0.05^(1/n), about 3/n.
        let u = binomial_upper(0, 500, 0.95);
        assert!((u - (1.0 - 0.05f64.powf(1.0 / 500.0))).abs() < 1e-9, "{u}");
        assert!(binomial_upper(1, 500, 0.95) > u);
        assert_eq!(binomial_upper(3, 3, 0.95), 1.0);
    }

    #[test]
    fn threshold_keeps_false_positives_within_budget() {
        let honest: Vec<u16> = (0..200).map(|i| 800 + i).collect();
        let t = threshold_at_fpr(&honest, 0.01);
        assert_eq!(honest.iter().filter(|&&h| h < t).count(), 2);
        assert_eq!(caught_rate(&[100, 801, 803], t), 2.0 / 3.0);
    }
}
