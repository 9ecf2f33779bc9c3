//! Seeds of certified rounds, collected from consensus activity so a proposer can put the seed of
//! its parent's round into the block header.
use crate::{Digest, Scheme, SeedSignature};
use commonware_actor::Feedback;
use commonware_consensus::{
    Reporter, Viewable,
    simplex::{scheme::bls12381_threshold::vrf::Seedable, types::Activity},
    types::View,
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// How many views of seeds to keep below the newest one.
const SEED_VIEWS_KEPT: u64 = 1024;

/// A shared map from view to the seed signature of that view's certificate.
#[derive(Clone, Default)]
pub struct SeedBook {
    seeds: Arc<Mutex<BTreeMap<View, SeedSignature>>>,
}

impl SeedBook {
    /// The seed recorded for `view`, if a certificate of that view was seen.
    pub fn get(&self, view: View) -> Option<SeedSignature> {
        self.seeds.lock().ok().and_then(|seeds| seeds.get(&view).copied())
    }

    fn insert(&self, view: View, signature: SeedSignature) {
        let Ok(mut seeds) = self.seeds.lock() else {
            return;
        };
        seeds.insert(view, signature);
        let newest = seeds.keys().next_back().map_or(0, |v| v.get());
        let floor = View::new(newest.saturating_sub(SEED_VIEWS_KEPT));
        *seeds = seeds.split_off(&floor);
    }
}

impl Reporter for SeedBook {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        // Consensus reports only verified certificates, so `seed()` cannot fail to decode here.
        match &activity {
            Activity::Notarization(n) | Activity::Certification(n) => {
                self.insert(n.view(), n.seed().signature);
            }
            Activity::Finalization(f) => self.insert(f.view(), f.seed().signature),
            _ => {}
        }
        Feedback::Ok
    }
}
