//! Time of one 1:N search: `cargo run --release -p firmware-app --example match_bench -- [TEMPLATES] [THREADS]`
//! (default 10,000 templates of 73×128, the CASIA-B HSTL embedding, 5 per identity).

use std::time::Instant;

use firmware_app::matcher::{Identity, MatchIndex};
use hstl::Embedding;
use rand::{Rng, SeedableRng};

const PARTS: usize = 73;
const CHANNELS: usize = 128;
const TEMPLATES_PER_PERSON: usize = 5;
const SEARCHES: usize = 50;

fn main() {
    let mut args = std::env::args().skip(1);
    let templates: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let random = |rng: &mut rand_chacha::ChaCha8Rng| {
        let values = (0..PARTS * CHANNELS)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Embedding::new(PARTS, CHANNELS, values).expect("shape")
    };
    let mut index = MatchIndex::new(PARTS, CHANNELS, threads);
    for i in 0..templates {
        if i % TEMPLATES_PER_PERSON == 0 {
            index.add_identity(Identity {
                person_id: i as i64,
                pseudonym: format!("{i:016x}"),
                name: format!("person {i}"),
            });
        }
        let template = random(&mut rng);
        index
            .push(index.identities().len() - 1, &template)
            .expect("shape");
    }
    let probes: Vec<Embedding> = (0..SEARCHES).map(|_| random(&mut rng)).collect();
    index.search(&probes[0]).expect("search");
    let started = Instant::now();
    for probe in &probes {
        index.search(probe).expect("search");
    }
    let per_search = started.elapsed().as_secs_f64() / SEARCHES as f64;
    println!(
        "{templates} templates ({} identities, {:.0} MB), {threads} threads: {:.2} ms per search",
        index.identities().len(),
        (templates * PARTS * CHANNELS * 4) as f64 / 1e6,
        per_search * 1e3
    );
}
