//! One accept rule from calibration to the door: a search at exactly the calibrated distance is
//! counted as accepted by `calibrate` and granted at the door, and one a hair farther is refused by
//! both.

use access::decision::{DecisionConfig, DecisionPolicy, Verdict, WindowOutcome};
use access::matcher::{Candidate, Ranking};
use calibration::open_set::OpenSetRates;

fn door_verdict(accept_distance: f32, distance: f32) -> Verdict {
    let mut policy = DecisionPolicy::new(
        DecisionConfig {
            consensus_windows: 1,
            relative_margin: 0.0,
            ..DecisionConfig::default()
        },
        accept_distance,
    );
    let window = WindowOutcome::Matched {
        ranking: Ranking {
            best: Some(Candidate {
                identity: 3,
                distance,
            }),
            second: None,
        },
        frames: 30,
    };
    policy
        .observe(1, &window, 1)
        .or_else(|| policy.track_ended(1))
        .expect("one window decides")
        .verdict
}

#[test]
fn a_search_at_exactly_the_calibrated_distance_is_accepted_by_calibration_and_at_the_door() {
    let mated_at = 0.4_f32;
    let rates =
        OpenSetRates::new(vec![Some(0.25), Some(mated_at)], vec![0.5, 0.7, 0.9, 1.1]).unwrap();
    let calibrated = rates.threshold_for_fpir(0.0).unwrap();
    assert_eq!(
        calibrated.threshold, mated_at,
        "the distance calibrate writes is a measured one"
    );
    assert_eq!(
        calibrated.fnir, 0.0,
        "calibrate counts the walk at the distance as accepted"
    );
    assert_eq!(
        door_verdict(calibrated.threshold, mated_at),
        Verdict::Granted { identity: 3 }
    );

    let farther = mated_at.next_up();
    let rates = OpenSetRates::new(vec![Some(0.25), Some(farther)], vec![0.5, 0.7]).unwrap();
    assert_eq!(
        rates.at(mated_at).fnir,
        0.5,
        "calibrate refuses a hair farther"
    );
    assert!(matches!(
        door_verdict(mated_at, farther),
        Verdict::Denied { .. }
    ));
}
