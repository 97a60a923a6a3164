//! The synthetic door scene: our test bench. A static textured room seen by a fixed indoor camera,
//! walkers with identity parameters crossing it, and what real sensors add (noise, soft shadows, slow
//! light drift, exposure steps). Deterministic from a seed, with a ground-truth label per pixel.
//!
//! Geometry: a pinhole camera at `CAMERA_HEIGHT_M` looking horizontally; the floor is the plane y = 0.
//! A walker moves on the floor along a straight line at `angle_deg` to the image plane (0° is a
//! lateral crossing as in CASIA-B's 90° view; larger angles approach the camera).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::f32::consts::{PI, TAU};
use std::time::Duration;

use image::GrayImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use silhouette::{Frame, FrameSource, SourceError};

const CAMERA_HEIGHT_M: f32 = 1.0;
/// Focal length as a fraction of the image width (a ~60° horizontal field of view).
const FOCAL_PER_WIDTH: f32 = 0.9;
const BACK_WALL_DEPTH_M: f32 = 7.5;
const FLOOR_TILE_M: f32 = 0.6;
const WALL_PANEL_M: f32 = 1.2;
/// Distance walkers start and end outside the field of view.
const OFF_SCREEN_MARGIN_M: f32 = 0.7;
const NOISE_TABLE_LEN: usize = 1 << 20;
const LIGHT_DRIFT_AMPLITUDE: f32 = 0.06;
const LIGHT_DRIFT_PERIOD_S: f32 = 9.0;
const EXPOSURE_STEP_MEAN_INTERVAL_S: f32 = 4.0;
const SHADOW_DARKENING: f32 = 0.45;

/// What makes one walker look and move like themselves.
///
/// A silhouette is normalised to its height before the network sees it, so height alone tells people
/// apart no better than it does on a real camera: what does is the body's proportions (legs, torso
/// depth, shoulders, head), its posture, what is worn and carried, and how the limbs move. Each is
/// drawn on its own, over the range adults show, so that two people rarely agree on all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkerIdentity {
    /// Standing height.
    pub height_m: f32,
    /// Leg length (hip joint to floor) over height.
    pub leg_fraction: f32,
    /// Multiplies every limb's thickness and the hips' breadth.
    pub girth: f32,
    /// Multiplies the chest-to-back depth of the torso (a slight or a heavy build, a belly).
    pub torso_depth: f32,
    /// Multiplies the breadth of the shoulders.
    pub shoulder_breadth: f32,
    /// Multiplies the size of the head.
    pub head_scale: f32,
    /// How far the head is carried forward of the shoulders, over height.
    pub head_forward: f32,
    /// Multiplies the length of the arms.
    pub arm_length: f32,
    /// Multiplies the nominal stride length and hip swing.
    pub stride_scale: f32,
    /// Full gait cycles (two steps) per second.
    pub cadence_hz: f32,
    /// Multiplies how far the knee bends as the leg swings through.
    pub knee_lift: f32,
    /// Multiplies the rise and fall of the hips over a stride.
    pub bounce: f32,
    /// Peak arm swing either side of vertical.
    pub arm_swing_deg: f32,
    /// Bend of the elbow when the arm hangs.
    pub elbow_bend_deg: f32,
    /// Forward lean of the torso.
    pub lean_deg: f32,
    /// What the hair adds to the head's outline.
    pub hair: Hair,
    /// What is carried.
    pub carrying: Carrying,
    /// What the legs wear.
    pub legwear: Legwear,
    /// A coat to mid-thigh over the shirt.
    pub wears_coat: bool,
    /// Grey level of the shirt (or coat).
    pub shirt_grey: u8,
    /// Grey level of the trousers.
    pub trousers_grey: u8,
    /// Grey level of the face and hands.
    pub skin_grey: u8,
    /// Grey level of a bag or backpack.
    pub bag_grey: u8,
}

/// What the hair adds to the head's outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hair {
    /// Nothing beyond the head.
    Short,
    /// Hair down the back of the neck to the shoulders.
    Long,
    /// A bun at the back of the head.
    Bun,
}

/// What the legs wear, which shapes the lower body's outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legwear {
    /// Trousers that follow the legs.
    Trousers,
    /// Loose trousers, wider at the shins.
    WideTrousers,
    /// A skirt to the knees over bare shins.
    Skirt,
    /// Shorts over bare legs.
    Shorts,
}

/// What a walker carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrying {
    /// Empty-handed.
    Nothing,
    /// A bag on a strap over the shoulder, at the hip.
    ShoulderBag,
    /// A backpack.
    Backpack,
}

impl WalkerIdentity {
    /// A plausible adult, drawn from `rng`. Clothing differs from the room by at least a few dozen
    /// grey levels, as on any camera where people are visible at all.
    pub fn random(rng: &mut impl Rng) -> Self {
        let clothing = |rng: &mut dyn rand::RngCore| -> u8 {
            if rng.random_bool(0.5) {
                rng.random_range(20..65)
            } else {
                rng.random_range(190..235)
            }
        };
        Self {
            height_m: rng.random_range(1.55..1.95),
            leg_fraction: rng.random_range(0.44..0.53),
            girth: rng.random_range(0.8..1.3),
            torso_depth: rng.random_range(0.8..1.45),
            shoulder_breadth: rng.random_range(0.85..1.2),
            head_scale: rng.random_range(0.88..1.15),
            head_forward: rng.random_range(0.0..0.045),
            arm_length: rng.random_range(0.92..1.08),
            stride_scale: rng.random_range(0.8..1.2),
            cadence_hz: rng.random_range(0.8..1.05),
            knee_lift: rng.random_range(0.65..1.35),
            bounce: rng.random_range(0.4..2.2),
            arm_swing_deg: rng.random_range(8.0..40.0),
            elbow_bend_deg: rng.random_range(5.0..35.0),
            lean_deg: rng.random_range(-3.0..10.0),
            hair: match rng.random_range(0..4) {
                0 => Hair::Long,
                1 => Hair::Bun,
                _ => Hair::Short,
            },
            carrying: match rng.random_range(0..8) {
                0 | 1 => Carrying::ShoulderBag,
                2 => Carrying::Backpack,
                _ => Carrying::Nothing,
            },
            legwear: match rng.random_range(0..8) {
                0 | 1 => Legwear::WideTrousers,
                2 => Legwear::Skirt,
                3 => Legwear::Shorts,
                _ => Legwear::Trousers,
            },
            wears_coat: rng.random_bool(0.2),
            shirt_grey: clothing(rng),
            trousers_grey: clothing(rng),
            skin_grey: if rng.random_bool(0.5) {
                rng.random_range(55..110)
            } else {
                rng.random_range(190..225)
            },
            bag_grey: clothing(rng),
        }
    }

    /// Walking speed: stride length (about 0.8 body heights, scaled) times cadence.
    pub fn speed_m_per_s(&self) -> f32 {
        0.8 * self.height_m * self.stride_scale * self.cadence_hz
    }
}

/// One walk through the scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// Who walks.
    pub identity: WalkerIdentity,
    /// Scene time at which the walker enters (just outside the field of view).
    pub start_s: f32,
    /// Angle between the walking direction and the image plane.
    pub angle_deg: f32,
    /// Enters from the left edge of the image (else from the right).
    pub from_left: bool,
    /// Distance from the camera where the path crosses the optical axis.
    pub depth_m: f32,
    /// Scene time and duration of a stop on the way (someone waiting at the door).
    pub pause: Option<(f32, f32)>,
}

/// What the scene shows: its frames, walkers and the sensor effects switched on.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second of the scene's clock.
    pub frame_rate: f64,
    /// Seeds the room's texture and the sensor noise.
    pub seed: u64,
    /// Frames to render; `None` ends when the last walker has left.
    pub frames: Option<u64>,
    /// The walkers, each with their own start time.
    pub walks: Vec<Walk>,
    /// Standard deviation of the sensor noise, grey levels.
    pub noise_sigma: f32,
    /// Soft cast shadows on the floor and the back wall.
    pub shadows: bool,
    /// Slow sinusoidal drift of the light.
    pub light_drift: bool,
    /// Sudden exposure steps, as auto-exposure makes them.
    pub exposure_steps: bool,
    /// Seconds of empty room before anyone enters (what a kiosk sees after boot).
    pub empty_lead_in_s: f32,
}

impl SceneConfig {
    /// One random walker crossing laterally, plain conditions (noise only).
    pub fn single_walker(seed: u64, width: u32, height: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05EE_D0F5_CE4E);
        let lead_in = 2.0;
        Self {
            width,
            height,
            frame_rate: 25.0,
            seed,
            frames: None,
            walks: vec![Walk {
                identity: WalkerIdentity::random(&mut rng),
                start_s: lead_in,
                angle_deg: rng.random_range(0.0..25.0),
                from_left: rng.random_bool(0.5),
                depth_m: rng.random_range(3.0..3.6),
                pause: None,
            }],
            noise_sigma: 2.5,
            shadows: false,
            light_drift: false,
            exposure_steps: false,
            empty_lead_in_s: lead_in,
        }
    }

    /// The same scene with every difficulty a real door camera adds.
    pub fn with_all_conditions(mut self) -> Self {
        self.shadows = true;
        self.light_drift = true;
        self.exposure_steps = true;
        self
    }

    fn focal_px(&self) -> f32 {
        FOCAL_PER_WIDTH * self.width as f32
    }

    /// Half the width of the field of view at `depth`, metres.
    fn half_view_m(&self, depth: f32) -> f32 {
        self.width as f32 / 2.0 / self.focal_px() * depth
    }

    /// Scene time at which `walk` has left the field of view.
    pub fn walk_end_s(&self, walk: &Walk) -> f32 {
        walk.start_s
            + path_length(self, walk) / walk.identity.speed_m_per_s()
            + walk.pause.map_or(0.0, |(_, d)| d)
    }
}

fn path_length(config: &SceneConfig, walk: &Walk) -> f32 {
    let angle = walk.angle_deg.to_radians();
    let half = config.half_view_m(walk.depth_m) + OFF_SCREEN_MARGIN_M;
    // Lateral extent covered along the path; a steep approach also leaves through the image bottom.
    2.0 * half / angle.cos().max(0.3)
}

/// Ground truth for one frame: 0 for the room, k for pixels of walk k-1.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// Per pixel: 0 for the room, k for walk k-1.
    pub labels: GrayImage,
}

impl GroundTruth {
    /// 255 where any walker is, 0 elsewhere.
    pub fn mask(&self) -> GrayImage {
        let mut mask = self.labels.clone();
        mask.iter_mut()
            .for_each(|v| *v = if *v > 0 { 255 } else { 0 });
        mask
    }
}

/// A capsule (a thick segment with round caps) in pixel coordinates; a disc when `a == b`.
struct Capsule {
    a: (f32, f32),
    b: (f32, f32),
    radius: f32,
    grey: f32,
    depth: f32,
}

/// The scene as a frame source, with the ground truth of the last frame it gave.
pub struct SyntheticScene {
    config: SceneConfig,
    room: Vec<f32>,
    noise: Vec<f32>,
    exposure_steps: Vec<(f32, f32)>,
    light_phase: f32,
    rng: ChaCha8Rng,
    index: u64,
    last_frame: u64,
}

impl SyntheticScene {
    /// Renders the room once; walkers are drawn frame by frame.
    pub fn new(config: SceneConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let room = render_room(&config, &mut rng);
        let noise = (0..NOISE_TABLE_LEN).map(|_| gaussian(&mut rng)).collect();
        let end_s = config
            .walks
            .iter()
            .map(|w| config.walk_end_s(w))
            .fold(config.empty_lead_in_s, f32::max);
        let last_frame = config
            .frames
            .unwrap_or((end_s as f64 * config.frame_rate).ceil() as u64);
        let mut exposure_steps = Vec::new();
        let mut t = 0.0;
        let mut gain = 1.0f32;
        while t < last_frame as f32 / config.frame_rate as f32 {
            t += rng.random_range(0.5..1.5) * EXPOSURE_STEP_MEAN_INTERVAL_S;
            let step = if rng.random_bool(0.5) {
                rng.random_range(0.84..0.92)
            } else {
                rng.random_range(1.09..1.18)
            };
            gain = (gain * step).clamp(0.75, 1.3);
            exposure_steps.push((t, gain));
        }
        let light_phase = rng.random_range(0.0..TAU);
        Self {
            config,
            room,
            noise,
            exposure_steps,
            light_phase,
            rng,
            index: 0,
            last_frame,
        }
    }

    /// The configuration the scene was made from.
    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    /// Frames until the last walker has left the view.
    pub fn total_frames(&self) -> u64 {
        self.last_frame
    }

    /// The next frame and its ground truth, or `None` at the end of the scene.
    pub fn next_with_truth(&mut self) -> Option<(Frame, GroundTruth)> {
        if self.index >= self.last_frame {
            return None;
        }
        let c = &self.config;
        let t = self.index as f32 / c.frame_rate as f32;
        let mut pixels = self.room.clone();
        let mut labels = GrayImage::new(c.width, c.height);

        let mut walkers: Vec<(usize, Vec<Capsule>, f32)> = c
            .walks
            .iter()
            .enumerate()
            .filter_map(|(k, walk)| pose(c, walk, t).map(|(body, depth)| (k, body, depth)))
            .collect();
        walkers.sort_by(|a, b| b.2.total_cmp(&a.2));
        if c.shadows {
            for walk in c.walks.iter() {
                if let Some(ground) = ground_point(c, walk, t) {
                    cast_shadow(c, &mut pixels, ground);
                }
            }
        }
        for (k, mut body, _) in walkers {
            body.sort_by(|a, b| b.depth.total_cmp(&a.depth));
            for capsule in &body {
                draw_capsule(c, &mut pixels, &mut labels, capsule, k as u8 + 1);
            }
        }

        let gain = self.gain_at(t);
        let offset = self.rng.random_range(0..NOISE_TABLE_LEN);
        let sigma = c.noise_sigma;
        let noise = &self.noise;
        let image = GrayImage::from_raw(
            c.width,
            c.height,
            pixels
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let n = noise[(offset + i) % NOISE_TABLE_LEN];
                    (v * gain + sigma * n).round().clamp(0.0, 255.0) as u8
                })
                .collect(),
        )
        .unwrap_or_else(|| unreachable!("one value per pixel"));
        let frame = Frame {
            index: self.index,
            timestamp: Duration::from_secs_f64(self.index as f64 / c.frame_rate),
            image,
        };
        self.index += 1;
        Some((frame, GroundTruth { labels }))
    }

    fn gain_at(&self, t: f32) -> f32 {
        let mut gain = 1.0;
        if self.config.light_drift {
            gain *= 1.0
                + LIGHT_DRIFT_AMPLITUDE * (TAU * t / LIGHT_DRIFT_PERIOD_S + self.light_phase).sin();
        }
        if self.config.exposure_steps {
            if let Some(&(_, g)) = self.exposure_steps.iter().rev().find(|(at, _)| *at <= t) {
                gain *= g;
            }
        }
        gain
    }
}

impl FrameSource for SyntheticScene {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        Ok(self.next_with_truth().map(|(frame, _)| frame))
    }

    fn frame_rate(&self) -> f64 {
        self.config.frame_rate
    }

    fn describe(&self) -> String {
        format!(
            "synthetic scene {}×{}, seed {}, {} walk(s)",
            self.config.width,
            self.config.height,
            self.config.seed,
            self.config.walks.len()
        )
    }
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Smooth random texture in [-1, 1]: a coarse random grid, bilinearly interpolated.
fn value_noise(width: u32, height: u32, cell_px: f32, rng: &mut impl Rng) -> Vec<f32> {
    let gw = (width as f32 / cell_px) as usize + 2;
    let gh = (height as f32 / cell_px) as usize + 2;
    let grid: Vec<f32> = (0..gw * gh).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            let (gx, gy) = (x as f32 / cell_px, y as f32 / cell_px);
            let (ix, iy) = (gx as usize, gy as usize);
            let (fx, fy) = (gx - ix as f32, gy - iy as f32);
            let at = |i: usize, j: usize| grid[j * gw + i];
            let top = at(ix, iy) * (1.0 - fx) + at(ix + 1, iy) * fx;
            let bottom = at(ix, iy + 1) * (1.0 - fx) + at(ix + 1, iy + 1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The empty room: a panelled back wall with a door and a notice board, a tiled floor, texture and
/// lens vignetting.
fn render_room(c: &SceneConfig, rng: &mut impl Rng) -> Vec<f32> {
    let (w, h) = (c.width as f32, c.height as f32);
    let f = c.focal_px();
    let (cx, cy) = (w / 2.0, h / 2.0);
    let wall_base = cy + f * CAMERA_HEIGHT_M / BACK_WALL_DEPTH_M;
    let fine = value_noise(c.width, c.height, w / 80.0, rng);
    let coarse = value_noise(c.width, c.height, w / 8.0, rng);
    let wall_grey = rng.random_range(135.0..165.0);
    let floor_grey = rng.random_range(95.0..125.0);
    let door_x = rng.random_range(-1.5..1.5f32);
    let board_x = door_x + if door_x > 0.0 { -2.0 } else { 1.6 };
    let tile_shades: Vec<f32> = (0..64).map(|_| rng.random_range(-7.0..7.0)).collect();
    let mut room = Vec::with_capacity((c.width * c.height) as usize);
    for y in 0..c.height {
        for x in 0..c.width {
            let (u, v) = (x as f32 + 0.5, y as f32 + 0.5);
            let i = (y * c.width + x) as usize;
            let mut grey = if v < wall_base {
                let wx = (u - cx) / f * BACK_WALL_DEPTH_M;
                let wy = CAMERA_HEIGHT_M - (v - cy) / f * BACK_WALL_DEPTH_M;
                let seam = (wx / WALL_PANEL_M).fract().abs();
                let mut g = wall_grey - 8.0 * (wy / 3.0);
                if !(0.01..=0.99).contains(&seam) {
                    g -= 25.0;
                }
                if (wx - door_x).abs() < 0.5 && wy < 2.1 {
                    g = if (wx - door_x).abs() > 0.44 || wy > 2.04 {
                        200.0
                    } else {
                        88.0
                    };
                }
                if (wx - board_x).abs() < 0.45 && (1.2..1.9).contains(&wy) {
                    let lines = ((wy * 18.0).fract() < 0.35) && ((wx * 7.0).sin() > -0.3);
                    g = if lines { 120.0 } else { 215.0 };
                }
                if wy < 0.1 {
                    g = 70.0;
                }
                g
            } else {
                let z = f * CAMERA_HEIGHT_M / (v - cy);
                let wx = (u - cx) / f * z;
                let (tx, tz) = ((wx / FLOOR_TILE_M).floor(), (z / FLOOR_TILE_M).floor());
                let grout = (wx / FLOOR_TILE_M)
                    .fract()
                    .abs()
                    .min(1.0 - (wx / FLOOR_TILE_M).fract().abs())
                    < 0.02
                    || (z / FLOOR_TILE_M).fract() < 0.02;
                let shade = tile_shades[((tx as i64 * 7 + tz as i64 * 13).rem_euclid(64)) as usize];
                floor_grey + shade - if grout { 18.0 } else { 0.0 }
            };
            grey += 4.0 * fine[i] + 9.0 * coarse[i];
            let r2 = ((u - cx) / cx).powi(2) + ((v - cy) / cy).powi(2);
            room.push(grey * (1.0 - 0.12 * r2));
        }
    }
    room
}

/// Floor position (x, z), walking direction, gait phase and how much the limbs swing (0 to 1).
type Placement = ((f32, f32), (f32, f32), f32, f32);

/// Where the walker is on the floor at time `t` (metres: x lateral, z depth), their walking direction,
/// and the gait phase; `None` before the walk starts or after it ends.
fn place(c: &SceneConfig, walk: &Walk, t: f32) -> Option<Placement> {
    if t < walk.start_s || t > c.walk_end_s(walk) {
        return None;
    }
    let (mut walking_time, mut stillness) = (t - walk.start_s, 0.0f32);
    if let Some((at, duration)) = walk.pause {
        if t > at {
            let paused = (t - at).min(duration);
            walking_time -= paused;
            // Fade the limb swing out when stopping and back in when setting off.
            let into_stop = (t - at).min(at + duration - t).max(0.0);
            stillness = smoothstep(0.0, 0.4, into_stop);
        }
    }
    let speed = walk.identity.speed_m_per_s();
    let angle = walk.angle_deg.to_radians();
    let side = if walk.from_left { 1.0 } else { -1.0 };
    let direction = (side * angle.cos(), -angle.sin());
    let half_path = path_length(c, walk) / 2.0;
    let travelled = walking_time * speed - half_path;
    let position = (
        direction.0 * travelled,
        walk.depth_m + direction.1 * travelled,
    );
    if position.1 < 1.2 {
        return None;
    }
    let phase = TAU * walk.identity.cadence_hz * walking_time;
    Some((position, direction, phase, 1.0 - stillness))
}

fn ground_point(c: &SceneConfig, walk: &Walk, t: f32) -> Option<(f32, f32)> {
    place(c, walk, t).map(|(p, ..)| p)
}

/// The body as capsules in pixel coordinates, and its depth, at time `t`.
fn pose(c: &SceneConfig, walk: &Walk, t: f32) -> Option<(Vec<Capsule>, f32)> {
    let (position, direction, phase, motion) = place(c, walk, t)?;
    let id = &walk.identity;
    let height = id.height_m;
    let leg = id.leg_fraction * height;
    let (thigh, shank) = (0.52 * leg, 0.48 * leg);
    let hip_y = leg - 0.012 * id.bounce * height * (2.0 * phase).cos() * motion;
    let shoulder_y = 0.815 * height;
    let lean = id.lean_deg.to_radians();
    let lateral = (-direction.1, direction.0);
    let hip_half = 0.085 * height * id.girth;
    let shoulder_half = 0.115 * height * id.shoulder_breadth;
    let f = c.focal_px();
    let (cx, cy) = (c.width as f32 / 2.0, c.height as f32 / 2.0);
    // Body frame (forward, up, lateral) in metres → pixel coordinates and depth.
    let project = |forward: f32, up: f32, side: f32| -> ((f32, f32), f32) {
        let x = position.0 + forward * direction.0 + side * lateral.0;
        let z = position.1 + forward * direction.1 + side * lateral.1;
        ((cx + f * x / z, cy + f * (CAMERA_HEIGHT_M - up) / z), z)
    };
    let angle = walk.angle_deg.to_radians();
    let mut body = Vec::new();
    let mut limb = |from: (f32, f32, f32), to: (f32, f32, f32), radius_m: f32, grey: u8| {
        let (a, za) = project(from.0, from.1, from.2);
        let (b, zb) = project(to.0, to.1, to.2);
        let depth = (za + zb) / 2.0;
        body.push(Capsule {
            a,
            b,
            radius: radius_m * f / depth,
            grey: grey as f32,
            depth,
        });
    };
    let swing = 0.36 * id.stride_scale * motion;
    for (side, offset) in [(-1.0f32, 0.0f32), (1.0, PI)] {
        let p = phase + offset;
        let thigh_angle = swing * p.sin();
        let knee_flex =
            (0.08 + 0.8 * id.knee_lift * p.cos().max(0.0).powi(2) + 0.15 * (-p.cos()).max(0.0))
                * motion
                + 0.05;
        let shank_angle = thigh_angle - knee_flex;
        let hip = (0.0, hip_y, side * hip_half);
        let knee = (
            thigh * thigh_angle.sin(),
            hip_y - thigh * thigh_angle.cos(),
            side * hip_half,
        );
        let ankle_up = (knee.1 - shank * shank_angle.cos()).max(0.06 * height * 0.5);
        let ankle = (
            knee.0 + shank * shank_angle.sin(),
            ankle_up,
            side * hip_half,
        );
        let toe = (
            ankle.0 + 0.13 * height,
            ankle.1 - 0.03 * height + 0.02,
            side * hip_half,
        );
        let (thigh_radius, shank_radius, shank_grey) = match id.legwear {
            Legwear::Trousers => (0.048, 0.033, id.trousers_grey),
            Legwear::WideTrousers => (0.056, 0.05, id.trousers_grey),
            Legwear::Skirt => (0.042, 0.026, id.skin_grey),
            Legwear::Shorts => (0.046, 0.027, id.skin_grey),
        };
        limb(
            hip,
            knee,
            thigh_radius * height * id.girth,
            id.trousers_grey,
        );
        limb(knee, ankle, shank_radius * height * id.girth, shank_grey);
        limb(
            ankle,
            toe,
            0.024 * height,
            id.trousers_grey.saturating_sub(15),
        );

        let arm_angle = -side * id.arm_swing_deg.to_radians() * p.sin() * motion;
        let shoulder = (
            shoulder_y * lean.sin() * 0.9,
            shoulder_y - 0.02 * height,
            side * shoulder_half,
        );
        let elbow_flex = id.elbow_bend_deg.to_radians() + 0.25 * (side * p.sin()).max(0.0) * motion;
        let (upper_arm, forearm) = (0.18 * height * id.arm_length, 0.16 * height * id.arm_length);
        let elbow = (
            shoulder.0 + upper_arm * arm_angle.sin(),
            shoulder.1 - upper_arm * arm_angle.cos(),
            side * shoulder_half * 1.05,
        );
        let wrist = (
            elbow.0 + forearm * (arm_angle + elbow_flex).sin(),
            elbow.1 - forearm * (arm_angle + elbow_flex).cos(),
            side * shoulder_half * 1.05,
        );
        limb(shoulder, elbow, 0.03 * height * id.girth, id.shirt_grey);
        limb(elbow, wrist, 0.024 * height * id.girth, id.shirt_grey);
        limb(wrist, wrist, 0.028 * height, id.skin_grey);
    }
    // The torso seen from the walking angle: its depth in profile, its width from the front.
    let torso_radius =
        (0.07 * id.torso_depth * angle.cos() + 0.1 * id.shoulder_breadth * angle.sin()) * height;
    let neck = (shoulder_y * lean.sin(), shoulder_y + 0.02 * height, 0.0);
    limb(
        (0.0, hip_y + 0.03 * height, 0.0),
        neck,
        torso_radius,
        id.shirt_grey,
    );
    if id.legwear == Legwear::Skirt {
        limb(
            (0.0, hip_y + 0.02 * height, 0.0),
            (0.0, hip_y - 0.8 * thigh, 0.0),
            torso_radius,
            id.trousers_grey,
        );
    }
    if id.wears_coat {
        limb(
            (0.0, 0.33 * height, 0.0),
            (0.0, hip_y, 0.0),
            torso_radius * 1.15,
            id.shirt_grey.saturating_sub(20),
        );
    }
    let head = (
        neck.0 + (0.02 + id.head_forward) * height,
        0.93 * height,
        0.0,
    );
    let head_radius = 0.064 * height * id.head_scale;
    limb(neck, head, 0.03 * height, id.skin_grey);
    limb(head, head, head_radius, id.skin_grey);
    let hair_grey = id.trousers_grey.min(60);
    match id.hair {
        Hair::Short => {}
        Hair::Long => limb(
            (head.0 - 0.5 * head_radius, head.1, 0.0),
            (neck.0 - 0.7 * head_radius, shoulder_y, 0.0),
            0.7 * head_radius,
            hair_grey,
        ),
        Hair::Bun => {
            let bun = (head.0 - head_radius, head.1 + 0.3 * head_radius, 0.0);
            limb(bun, bun, 0.45 * head_radius, hair_grey);
        }
    }
    match id.carrying {
        Carrying::Nothing => {}
        Carrying::ShoulderBag => {
            let bag = (
                -0.04 + 0.03 * phase.sin() * motion,
                0.5 * height,
                shoulder_half * 1.2,
            );
            limb((0.0, shoulder_y, shoulder_half), bag, 0.008 * height, 40);
            limb(
                (bag.0 - 0.03 * height, bag.1, bag.2),
                (bag.0 + 0.03 * height, bag.1 - 0.04 * height, bag.2),
                0.06 * height,
                id.bag_grey,
            );
        }
        Carrying::Backpack => {
            let behind = -(torso_radius + 0.05 * height);
            limb(
                (behind + neck.0 * 0.8, shoulder_y - 0.06 * height, 0.0),
                (behind + neck.0 * 0.4, shoulder_y - 0.26 * height, 0.0),
                0.065 * height,
                id.bag_grey,
            );
        }
    }
    Some((body, position.1))
}

/// A soft shadow on the floor, offset from the feet away from a light above and in front.
fn cast_shadow(c: &SceneConfig, pixels: &mut [f32], ground: (f32, f32)) {
    let f = c.focal_px();
    let (cx, cy) = (c.width as f32 / 2.0, c.height as f32 / 2.0);
    let (x, z) = (ground.0 + 0.25, ground.1 + 0.35);
    let (u0, v0) = (cx + f * x / z, cy + f * CAMERA_HEIGHT_M / z);
    let ru = 0.55 * f / z;
    let rv = 0.45 * f * CAMERA_HEIGHT_M / (z * z);
    let (x0, x1) = (
        (u0 - ru).max(0.0) as u32,
        ((u0 + ru) as u32 + 1).min(c.width),
    );
    let (y0, y1) = (
        (v0 - rv).max(0.0) as u32,
        ((v0 + rv) as u32 + 1).min(c.height),
    );
    for y in y0..y1 {
        for xx in x0..x1 {
            let d = (((xx as f32 + 0.5 - u0) / ru).powi(2) + ((y as f32 + 0.5 - v0) / rv).powi(2))
                .sqrt();
            let darkness = SHADOW_DARKENING * (1.0 - smoothstep(0.45, 1.0, d));
            pixels[(y * c.width + xx) as usize] *= 1.0 - darkness;
        }
    }
}

/// Draws a capsule with anti-aliased edges and cylindrical shading; pixels it covers by at least
/// half take its label.
fn draw_capsule(
    c: &SceneConfig,
    pixels: &mut [f32],
    labels: &mut GrayImage,
    s: &Capsule,
    label: u8,
) {
    let r = s.radius.max(0.5);
    let x0 = (s.a.0.min(s.b.0) - r - 1.0).max(0.0) as u32;
    let x1 = ((s.a.0.max(s.b.0) + r + 2.0).max(0.0) as u32).min(c.width);
    let y0 = (s.a.1.min(s.b.1) - r - 1.0).max(0.0) as u32;
    let y1 = ((s.a.1.max(s.b.1) + r + 2.0).max(0.0) as u32).min(c.height);
    let (dx, dy) = (s.b.0 - s.a.0, s.b.1 - s.a.1);
    let length2 = dx * dx + dy * dy;
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5 - s.a.0, y as f32 + 0.5 - s.a.1);
            let along = if length2 > 0.0 {
                ((px * dx + py * dy) / length2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let distance = ((px - along * dx).powi(2) + (py - along * dy).powi(2)).sqrt();
            let coverage = (r + 0.5 - distance).clamp(0.0, 1.0);
            if coverage <= 0.0 {
                continue;
            }
            let shading = 0.82 + 0.18 * (1.0 - (distance / r).min(1.0).powi(2));
            let i = (y * c.width + x) as usize;
            pixels[i] = pixels[i] * (1.0 - coverage) + s.grey * shading * coverage;
            if coverage >= 0.5 {
                labels.put_pixel(x, y, image::Luma([label]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(config: SceneConfig) -> Vec<(Frame, GroundTruth)> {
        let mut scene = SyntheticScene::new(config);
        std::iter::from_fn(|| scene.next_with_truth()).collect()
    }

    #[test]
    fn same_seed_same_frames_other_seed_other_frames() {
        let a = frames_of(SceneConfig::single_walker(3, 160, 120));
        let b = frames_of(SceneConfig::single_walker(3, 160, 120));
        let c = frames_of(SceneConfig::single_walker(4, 160, 120));
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.0.image == y.0.image && x.1.labels == y.1.labels));
        assert!(a[0].0.image != c[0].0.image);
    }

    #[test]
    fn walker_enters_crosses_and_leaves() {
        let frames = frames_of(SceneConfig::single_walker(11, 320, 240));
        let area: Vec<usize> = frames
            .iter()
            .map(|(_, t)| t.labels.iter().filter(|&&v| v > 0).count())
            .collect();
        assert_eq!(area[0], 0, "the lead-in shows the empty room");
        assert_eq!(*area.last().unwrap(), 0, "the walker has left at the end");
        let tallest = frames
            .iter()
            .map(|(_, t)| {
                let rows: Vec<u32> = t
                    .labels
                    .enumerate_pixels()
                    .filter(|p| p.2 .0[0] > 0)
                    .map(|p| p.1)
                    .collect();
                rows.iter()
                    .max()
                    .zip(rows.iter().min())
                    .map_or(0, |(a, b)| a - b)
            })
            .max()
            .unwrap();
        assert!(
            tallest > 240 / 2,
            "a person fills much of the frame height, got {tallest}px"
        );
        assert!(
            frames.len() > 60,
            "a crossing lasts seconds, got {} frames",
            frames.len()
        );
    }

    #[test]
    fn the_person_differs_from_the_room_and_the_noise_is_small() {
        let mut scene = SyntheticScene::new(SceneConfig::single_walker(5, 320, 240));
        let (first, _) = scene.next_with_truth().unwrap();
        let (second, _) = scene.next_with_truth().unwrap();
        let diff: f64 = first
            .image
            .iter()
            .zip(second.image.iter())
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            / first.image.len() as f64;
        // Two noisy frames of a static room differ by sqrt(2)·sigma.
        assert!(
            (diff.sqrt() - 2.5 * 2f64.sqrt()).abs() < 0.6,
            "rms {}",
            diff.sqrt()
        );
    }

    #[test]
    fn exposure_steps_change_the_whole_frame() {
        let mut config = SceneConfig::single_walker(9, 160, 120);
        config.exposure_steps = true;
        config.walks.clear();
        config.frames = Some(400);
        let frames = frames_of(config);
        let means: Vec<f64> = frames
            .iter()
            .map(|(f, _)| f.image.iter().map(|&v| v as f64).sum::<f64>() / f.image.len() as f64)
            .collect();
        let biggest_jump = means
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max);
        assert!(biggest_jump > 8.0, "no exposure step seen ({biggest_jump})");
    }
}
