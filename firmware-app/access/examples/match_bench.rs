//! Time of one 1:N search: `cargo run --release -p access --example match_bench -- [TEMPLATES] [THREADS]`
//! (default 10,000 templates of 73×128, the CASIA-B HSTL embedding, 5 per identity).
//!
//! Three galleries: independent uniform noise, where every template is about as far as every other and
//! the prefilter can rule out the fewest; and people, each a point with walks scattered around it at
//! half the distance between people, searched with a new walk of an enrolled person and with a
//! stranger's walk.

use std::time::Instant;

use access::matcher::{Identity, MatchIndex};
use hstl::Embedding;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PARTS: usize = 73;
const CHANNELS: usize = 128;
const TEMPLATES_PER_PERSON: usize = 5;
const SEARCHES: usize = 50;
/// Half-width of a walk's scatter around its person, against person points uniform in [-1, 1].
const WALK_SPREAD: f32 = 0.6;

fn uniform(rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..PARTS * CHANNELS)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

fn walk_of(person: &[f32], rng: &mut ChaCha8Rng) -> Embedding {
    let values = person
        .iter()
        .map(|v| v + rng.random_range(-WALK_SPREAD..WALK_SPREAD))
        .collect();
    Embedding::new(PARTS, CHANNELS, values).expect("shape")
}

fn time_searches(label: &str, index: &MatchIndex, probes: &[Embedding]) {
    index.search(&probes[0]).expect("search");
    let started = Instant::now();
    let mut measured = 0;
    for probe in probes {
        measured += index
            .search_counting(probe)
            .expect("search")
            .exact_measurements;
    }
    let per_search = started.elapsed().as_secs_f64() / probes.len() as f64;
    println!(
        "  {label}: {:.2} ms per search, {:.1} templates measured exactly",
        per_search * 1e3,
        measured as f64 / probes.len() as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let templates: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let people = templates.div_ceil(TEMPLATES_PER_PERSON);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!(
        "{templates} templates ({people} identities, {:.0} MB of f32), {threads} threads",
        (templates * PARTS * CHANNELS * 4) as f64 / 1e6
    );

    let mut noise = MatchIndex::new(PARTS, CHANNELS, threads);
    let mut points = Vec::with_capacity(people);
    let mut walks = MatchIndex::new(PARTS, CHANNELS, threads);
    for person in 0..people {
        let identity = Identity {
            person_id: person as i64,
            pseudonym: format!("{person:016x}"),
            name: format!("person {person}"),
            credential: None,
        };
        let noise_slot = noise.add_identity(identity.clone());
        let walk_slot = walks.add_identity(identity);
        let point = uniform(&mut rng);
        for _ in 0..TEMPLATES_PER_PERSON.min(templates - person * TEMPLATES_PER_PERSON) {
            let values = uniform(&mut rng);
            noise
                .push(
                    noise_slot,
                    &Embedding::new(PARTS, CHANNELS, values).expect("shape"),
                )
                .expect("shape");
            walks
                .push(walk_slot, &walk_of(&point, &mut rng))
                .expect("shape");
        }
        points.push(point);
    }

    for (label, index) in [("uniform noise", &noise), ("people", &walks)] {
        let started = Instant::now();
        index.prepare();
        println!(
            "  {label}: prefilter codes built in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    let noise_probes: Vec<Embedding> = (0..SEARCHES)
        .map(|_| Embedding::new(PARTS, CHANNELS, uniform(&mut rng)).expect("shape"))
        .collect();
    time_searches("uniform noise", &noise, &noise_probes);
    let enrolled: Vec<Embedding> = (0..SEARCHES)
        .map(|i| walk_of(&points[i * people / SEARCHES], &mut rng))
        .collect();
    time_searches("people, an enrolled person walks up", &walks, &enrolled);
    let strangers: Vec<Embedding> = (0..SEARCHES)
        .map(|_| walk_of(&uniform(&mut rng), &mut rng))
        .collect();
    time_searches("people, a stranger walks up", &walks, &strangers);
}
