//! An Inception block's branches on two threads at once (one image, two
//! threads): which steps each thread runs ([`choose`]), the parts of the
//! buffers each may touch ([`carve`]), and views that hand each thread
//! only its own parts ([`BranchViews`]).
//!
//! Splitting every convolution between the two threads costs a meeting
//! point per step (a hundred per run), and each step then reads data the
//! other core wrote. When the host places the two vCPUs far apart (a cache
//! line's round trip 300-450 ns, not 45-90), that costs every 17x17 and
//! 8x8 convolution 0.04-0.09 ms. A block whose branches split into two
//! near-equal halves runs each half on one thread instead: one meeting
//! point per block, and a branch's values stay in the cache of the core
//! that made them.

use crate::exec::ImageViews;
use crate::plan::Slot;

/// Steps `start..mid` run on one thread while steps `mid..end` run on the
/// other; both only read what steps before `start` wrote, and write apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    /// The first step of the first side.
    pub start: usize,
    /// The first step of the second side.
    pub mid: usize,
    /// The step after the second side.
    pub end: usize,
    /// Multiply-accumulates of each side, the measure of work that
    /// `balance::join` compares the two threads' speeds by.
    pub work: [usize; 2],
    /// The parts of the buffers the fork's steps touch, in buffer and then
    /// offset order.
    pub pieces: Vec<Piece>,
}

/// Who may touch a part of a buffer during a fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// One side (0 or 1), to read and write.
    Side(usize),
    /// Both sides, to read only (the block's input).
    Both,
}

/// A range of one image's part of a buffer, and who may touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Buffer.
    pub buf: usize,
    /// First element.
    pub offset: usize,
    /// Elements.
    pub len: usize,
    /// Who may touch it.
    pub owner: Owner,
}

/// Where each unit of a segment runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// On thread 0 or 1, during the fork.
    Thread(usize),
    /// After the fork, its work split between the threads as usual.
    After,
}

/// What splitting one step between the two threads costs beyond half its
/// work, in multiply-accumulates: the meeting point and the data the other
/// core wrote. A fork costs twice as much: its meeting point, and the
/// imbalance of its sides, which it cannot even out by the threads' speeds
/// as a split step does. About 0.02 ms of one core (60 GMAC/s), between
/// the 0.01 ms measured with the vCPUs close and the 0.04-0.09 ms with them
/// far apart; 4 M (more forked, larger sides) ran no faster in alternating
/// runs.
pub const STEP_COST: u64 = 1_200_000;

/// Segments with more units to place than this are not searched (an
/// Inception block has at most 12; the search is exponential). A unit
/// without work that reads one unit of the segment, and is its only
/// reader (a BatchNorm or ReLU left unfused because a tap keeps its input),
/// is not placed but follows that unit.
const MAX_UNITS: usize = 16;

/// A fork chosen for units (in order) `start..end`, reordered as `order`.
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The units in their new order: the first side's, the second's, then
    /// those that run after the fork.
    pub order: Vec<usize>,
    /// The segment's first unit: `order` replaces units
    /// `start..start + order.len()`, and the first side starts here.
    pub start: usize,
    /// Where the second side starts (`start` plus the first side's units).
    pub mid: usize,
    /// Where the units after the fork start.
    pub end: usize,
}

/// Chooses forks for a sequence of units in topological order (a plan's
/// step groups), where `deps[u]` lists the earlier units `u` reads (`None`
/// for the graph's input) and `work[u]` is its multiply-accumulates.
///
/// The sequence is cut where one unit's output is all that later units read
/// of everything before (an Inception block's concatenation): each segment
/// between two cuts is searched for the split into two sides that run at
/// once and the units that run after both, minimising
/// `max(side 0, side 1) + after / 2`, plus `step_cost` (see [`STEP_COST`])
/// for each unit with work after the fork and twice that for the fork. A
/// segment forks when that beats splitting every unit:
/// `total / 2 + step_cost` per unit with work.
pub fn choose(deps: &[Vec<Option<usize>>], work: &[u64], step_cost: u64) -> Vec<Chosen> {
    let n = deps.len();
    // cover[i] > 0: some unit after i reads a unit before i (or the input).
    let mut diff = vec![0i64; n + 1];
    for (u, ds) in deps.iter().enumerate() {
        for d in ds {
            let from = d.map_or(0, |d| d + 1);
            if from < u {
                diff[from] += 1;
                diff[u] -= 1;
            }
        }
    }
    let mut cuts = Vec::new();
    let mut cover = 0;
    for (i, d) in diff.iter().enumerate().take(n) {
        cover += d;
        if cover == 0 {
            cuts.push(i);
        }
    }
    let mut readers = vec![0usize; n];
    for d in deps.iter().flatten().flatten() {
        readers[*d] += 1;
    }
    let mut chosen = Vec::new();
    let mut from = 0;
    for &cut in &cuts {
        let segment: Vec<usize> = (from..=cut).collect();
        from = cut + 1;
        // The unit each unit follows (itself when it is placed).
        let mut lead: Vec<usize> = Vec::with_capacity(segment.len());
        for &u in &segment {
            let follows = match deps[u][..] {
                [Some(d)] if d >= segment[0] && work[u] == 0 && readers[d] == 1 => {
                    lead[d - segment[0]]
                }
                _ => u,
            };
            lead.push(follows);
        }
        let placed = segment.iter().zip(&lead).filter(|(u, l)| u == l).count();
        if (3..=MAX_UNITS).contains(&placed)
            && let Some(sides) = best_split(&segment, &lead, deps, work, step_cost)
        {
            let pick = |s: Side| segment.iter().zip(&sides).filter(move |(_, x)| **x == s);
            let mut order: Vec<usize> = pick(Side::Thread(0)).map(|(u, _)| *u).collect();
            let mid = order.len();
            order.extend(pick(Side::Thread(1)).map(|(u, _)| *u));
            let end = order.len();
            order.extend(pick(Side::After).map(|(u, _)| *u));
            chosen.push(Chosen {
                start: segment[0],
                mid: segment[0] + mid,
                end: segment[0] + end,
                order,
            });
        }
    }
    chosen
}

/// The best placement of a segment's units, when it is worth a fork.
fn best_split(
    segment: &[usize],
    lead: &[usize],
    deps: &[Vec<Option<usize>>],
    work: &[u64],
    step_cost: u64,
) -> Option<Vec<Side>> {
    let total: u64 = segment.iter().map(|&u| work[u]).sum();
    let busy = segment.iter().filter(|&&u| work[u] > 0).count() as u64;
    let mut sides = Vec::with_capacity(segment.len());
    let mut best: Option<(f64, Vec<Side>)> = None;
    let search = Search {
        segment,
        lead,
        deps,
        work,
        step_cost,
    };
    search.run(&mut sides, [0, 0, 0], &mut best);
    let (cost, sides) = best?;
    let split_all = total as f64 / 2.0 + (busy * step_cost) as f64;
    (cost + 2.0 * (step_cost as f64) < split_all).then_some(sides)
}

/// The search for a segment's best placement.
struct Search<'a> {
    segment: &'a [usize],
    /// The unit each follows (see [`MAX_UNITS`]).
    lead: &'a [usize],
    deps: &'a [Vec<Option<usize>>],
    work: &'a [u64],
    step_cost: u64,
}

impl Search<'_> {
    /// Depth-first over the placements of `segment[sides.len()..]`: a unit
    /// runs on a thread only when every unit of the segment it reads runs on
    /// the same thread, and after the fork otherwise or by choice. `sums` is
    /// the work placed so far on thread 0, thread 1 and after (there with
    /// twice the step cost of each unit, as it counts half).
    fn run(&self, sides: &mut Vec<Side>, sums: [u64; 3], best: &mut Option<(f64, Vec<Side>)>) {
        // Placing more work never lowers the cost: prune.
        if best.as_ref().is_some_and(|(b, _)| cost(sums) > *b) {
            return;
        }
        let Some(&u) = self.segment.get(sides.len()) else {
            // Both threads must have work, or it is no fork.
            if sums[0] > 0 && sums[1] > 0 && best.as_ref().is_none_or(|(b, _)| cost(sums) < *b) {
                *best = Some((cost(sums), sides.clone()));
            }
            return;
        };
        let start = self.segment[0];
        let lead = self.lead[u - start];
        if lead != u {
            sides.push(sides[lead - start]);
            self.run(sides, sums, best);
            sides.pop();
            return;
        }
        // The sides of the segment's units that `u` reads.
        let read: Vec<Side> = self.deps[u]
            .iter()
            .filter_map(|d| d.filter(|&d| d >= start).map(|d| sides[d - start]))
            .collect();
        // Thread 1 is only opened after thread 0 (the two are interchangeable).
        let opened = sides.contains(&Side::Thread(0));
        let mut options = vec![Side::After];
        for t in 0..2 {
            if (t == 0 || opened) && read.iter().all(|s| *s == Side::Thread(t)) {
                options.push(Side::Thread(t));
            }
        }
        let w = self.work[u];
        for side in options {
            let mut next = sums;
            match side {
                Side::Thread(t) => next[t] += w,
                Side::After if w > 0 => next[2] += w + 2 * self.step_cost,
                Side::After => {}
            }
            sides.push(side);
            self.run(sides, next, best);
            sides.pop();
        }
    }
}

/// The predicted time of a placement with work `s` on thread 0, thread 1
/// and after the fork (split between the two, step costs included).
fn cost(s: [u64; 3]) -> f64 {
    s[0].max(s[1]) as f64 + s[2] as f64 / 2.0
}

/// The pieces of the buffers a fork's two sides touch: `sides[t]` lists the
/// `(read, written)` slot pairs of side `t`'s steps. Each connected stretch
/// of touched elements is one piece: a side's own, or shared when both only
/// read it. `None` when the sides are not independent (one touches what
/// the other writes).
pub fn carve(sides: [&[(Slot, Slot)]; 2]) -> Option<Vec<Piece>> {
    // (buf, start, end, side, written)
    let mut spans: Vec<(usize, usize, usize, usize, bool)> = Vec::new();
    for (t, pairs) in sides.iter().enumerate() {
        for (r, w) in pairs.iter() {
            spans.push((r.buf, r.offset, r.offset + r.len, t, false));
            spans.push((w.buf, w.offset, w.offset + w.len, t, true));
        }
    }
    spans.sort_unstable();
    let mut pieces: Vec<Piece> = Vec::new();
    // The stretch being gathered: buffer, start, end, sides touching, written.
    let mut open: Option<(usize, usize, usize, [bool; 2], bool)> = None;
    let close = |(buf, a, b, touched, written): (usize, usize, usize, [bool; 2], bool),
                 pieces: &mut Vec<Piece>|
     -> Option<()> {
        let owner = match touched {
            [true, true] if written => return None,
            [true, true] => Owner::Both,
            [true, false] => Owner::Side(0),
            _ => Owner::Side(1),
        };
        pieces.push(Piece {
            buf,
            offset: a,
            len: b - a,
            owner,
        });
        Some(())
    };
    for (buf, a, b, t, w) in spans {
        match &mut open {
            Some(o) if o.0 == buf && a < o.2 => {
                o.2 = o.2.max(b);
                o.3[t] = true;
                o.4 |= w;
            }
            _ => {
                if let Some(o) = open.take() {
                    close(o, &mut pieces)?;
                }
                let mut touched = [false; 2];
                touched[t] = true;
                open = Some((buf, a, b, touched, w));
            }
        }
    }
    if let Some(o) = open {
        close(o, &mut pieces)?;
    }
    Some(pieces)
}

/// One side's views of one image's buffers during a fork: its own pieces,
/// to read and write, and the shared ones, to read.
pub struct BranchViews<'a, T> {
    parts: Vec<(Piece, Part<'a, T>)>,
}

enum Part<'a, T> {
    Own(&'a mut [T]),
    Shared(&'a [T]),
}

impl<'a, T> BranchViews<'a, T> {
    /// Splits one image's `views` (one per buffer) into the two sides' views
    /// of `fork`'s pieces.
    pub fn split(views: &'a mut [&mut [T]], fork: &Fork) -> [Self; 2] {
        let mut sides = [Self { parts: Vec::new() }, Self { parts: Vec::new() }];
        let mut pieces = fork.pieces.iter().peekable();
        for (b, view) in views.iter_mut().enumerate() {
            let mut rest: &'a mut [T] = &mut view[..];
            let mut at = 0;
            while let Some(p) = pieces.next_if(|p| p.buf == b) {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(p.offset - at);
                let (mine, tail) = tail.split_at_mut(p.len);
                rest = tail;
                at = p.offset + p.len;
                match p.owner {
                    Owner::Side(t) => sides[t].parts.push((*p, Part::Own(mine))),
                    Owner::Both => {
                        let shared: &'a [T] = mine;
                        for side in &mut sides {
                            side.parts.push((*p, Part::Shared(shared)));
                        }
                    }
                }
            }
        }
        sides
    }

    /// The index of the part holding all of `s`.
    fn find(&self, s: Slot) -> usize {
        self.parts
            .iter()
            .position(|(p, _)| {
                p.buf == s.buf && p.offset <= s.offset && s.offset + s.len <= p.offset + p.len
            })
            .unwrap_or_else(|| unreachable!("a fork's pieces cover its steps' slots ({s:?})"))
    }
}

impl<T: Copy> ImageViews<T> for BranchViews<'_, T> {
    fn with_slots(&mut self, from: Slot, to: Slot, f: impl FnOnce(&[T], &mut [T])) {
        let (i, j) = (self.find(from), self.find(to));
        let local = |p: &Piece, s: Slot| s.offset - p.offset..s.offset - p.offset + s.len;
        let (src, dst) = (local(&self.parts[i].0, from), local(&self.parts[j].0, to));
        let (x, y) = if i < j {
            let (a, b) = self.parts.split_at_mut(j);
            (&a[i].1, &mut b[0].1)
        } else if i > j {
            let (a, b) = self.parts.split_at_mut(i);
            (&b[0].1, &mut a[j].1)
        } else {
            let copied = match &self.parts[i].1 {
                Part::Own(x) => x[src].to_vec(),
                Part::Shared(x) => x[src].to_vec(),
            };
            let Part::Own(y) = &mut self.parts[j].1 else {
                unreachable!("a fork's side writes only its own pieces ({to:?})")
            };
            return f(&copied, &mut y[dst]);
        };
        let x: &[T] = match x {
            Part::Own(x) => x,
            Part::Shared(x) => x,
        };
        let Part::Own(y) = y else {
            unreachable!("a fork's side writes only its own pieces ({to:?})")
        };
        f(&x[src], &mut y[dst]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Inception-A-like block after a stem unit 0: four branches from
    /// unit 0 (1, 2→3, 4→5→6, 7) into a concatenation 8, then unit 9.
    fn block() -> (Vec<Vec<Option<usize>>>, Vec<u64>) {
        let deps = vec![
            vec![None],
            vec![Some(0)],
            vec![Some(0)],
            vec![Some(2)],
            vec![Some(0)],
            vec![Some(4)],
            vec![Some(5)],
            vec![Some(0)],
            vec![Some(1), Some(3), Some(6), Some(7)],
            vec![Some(8)],
        ];
        let work = vec![50, 12, 9, 77, 12, 55, 83, 6, 0, 40];
        (deps, work)
    }

    #[test]
    fn a_block_splits_into_two_even_sides_and_what_follows() {
        let (deps, work) = block();
        let chosen = choose(&deps, &work, 1);
        assert_eq!(chosen.len(), 1, "{chosen:?}");
        let c = &chosen[0];
        assert_eq!(c.start, 1);
        // The best there is: sides of 86 and 85 with 83 after, 127.5 where
        // the ideal (half of 254) is 127; with the step costs, 130.5 against
        // 134 for splitting all 7 units.
        let side = |r: std::ops::Range<usize>| {
            c.order[r.start - 1..r.end - 1]
                .iter()
                .map(|&u| work[u])
                .sum::<u64>()
        };
        let (a, b, after) = (side(c.start..c.mid), side(c.mid..c.end), side(c.end..9));
        assert_eq!(a.max(b) * 2 + after, 255, "{c:?}");
        // Every unit once, each after what it reads.
        let mut sorted = c.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=8).collect::<Vec<_>>());
        assert_eq!(c.order.last(), Some(&8), "the concatenation runs last");
    }

    #[test]
    fn an_uneven_block_or_a_chain_does_not_fork() {
        let (deps, mut work) = block();
        // The head of the longest branch dominates: the best fork (12 and 15
        // on the threads, 715 after) predicts 15 + 357.5 + 4 + 2 = 378.5
        // where splitting all predicts 371 + 7 = 378.
        work[4] = 500;
        let chosen = choose(&deps, &work, 1);
        assert!(chosen.is_empty(), "{chosen:?}");
        let chain: Vec<Vec<Option<usize>>> = (0usize..6).map(|u| vec![u.checked_sub(1)]).collect();
        assert!(choose(&chain, &[1; 6], 1).is_empty());
    }

    /// The block with each unit that has work followed by two without
    /// (an unfused BatchNorm and ReLU, their inputs tapped): 24 units,
    /// beyond [`MAX_UNITS`], of which 10 are placed; the fork is the one
    /// of the fused block.
    #[test]
    fn units_without_work_follow_what_they_read() {
        let (deps, work) = block();
        let mut new_of = Vec::new();
        let (mut deps2, mut work2): (Vec<Vec<Option<usize>>>, Vec<u64>) = (Vec::new(), Vec::new());
        for (u, ds) in deps.iter().enumerate() {
            deps2.push(ds.iter().map(|d| d.map(|d: usize| new_of[d])).collect());
            work2.push(work[u]);
            if work[u] > 0 && (1..8).contains(&u) {
                for _ in 0..2 {
                    deps2.push(vec![Some(deps2.len() - 1)]);
                    work2.push(0);
                }
            }
            new_of.push(deps2.len() - 1);
        }
        assert_eq!(deps2.len(), 24);
        let chosen = choose(&deps2, &work2, 1);
        assert_eq!(chosen.len(), 1, "{chosen:?}");
        let c = &chosen[0];
        let side = |r: std::ops::Range<usize>| {
            c.order[r.start - 1..r.end - 1]
                .iter()
                .map(|&u| work2[u])
                .sum::<u64>()
        };
        let (a, b) = (side(c.start..c.mid), side(c.mid..c.end));
        assert_eq!((a.max(b), a.min(b)), (86, 85), "{c:?}");
        // A follower runs on its leader's side, after it.
        for (i, &u) in c.order.iter().enumerate() {
            if work2[u] == 0 && deps2[u].len() == 1 {
                let leader = deps2[u][0].expect("a unit of the block");
                let at = c
                    .order
                    .iter()
                    .position(|&x| x == leader)
                    .expect("in the fork");
                let part = |i: usize| usize::from(i + 1 >= c.mid) + usize::from(i + 1 >= c.end);
                assert!(at < i && part(at) == part(i), "{u} follows {leader}: {c:?}");
            }
        }
    }

    #[test]
    fn sides_own_what_they_write_and_share_what_both_read() {
        let input = Slot::at(0, 0, 30);
        let a = [
            (input, Slot::at(1, 0, 10)),
            (Slot::at(1, 0, 10), Slot::at(2, 0, 20)),
        ];
        let b = [
            (input, Slot::at(3, 0, 10)),
            (Slot::at(3, 0, 10), Slot::at(2, 20, 20)),
        ];
        let pieces = carve([&a, &b]).expect("independent sides");
        let owners: Vec<(usize, usize, Owner)> =
            pieces.iter().map(|p| (p.buf, p.offset, p.owner)).collect();
        assert_eq!(
            owners,
            [
                (0, 0, Owner::Both),
                (1, 0, Owner::Side(0)),
                (2, 0, Owner::Side(0)),
                (2, 20, Owner::Side(1)),
                (3, 0, Owner::Side(1)),
            ]
        );
        // Side 1 writing what side 0 reads is no fork.
        let b = [(input, Slot::at(1, 5, 10))];
        assert_eq!(carve([&a, &b]), None);
    }

    #[test]
    fn views_give_each_side_its_pieces() {
        let input = Slot::at(0, 0, 4);
        let a = [(input, Slot::at(1, 0, 4))];
        let b = [(input, Slot::at(1, 4, 4))];
        let fork = Fork {
            start: 0,
            mid: 1,
            end: 2,
            work: [1, 1],
            pieces: carve([&a, &b]).expect("independent sides"),
        };
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        let mut y = [0.0f32; 8];
        let mut views: Vec<&mut [f32]> = vec![&mut x, &mut y];
        let [mut va, mut vb] = BranchViews::split(&mut views, &fork);
        va.with_slots(a[0].0, a[0].1, |x, y| y.copy_from_slice(x));
        vb.with_slots(b[0].0, b[0].1, |x, y| {
            for (y, x) in y.iter_mut().zip(x) {
                *y = -x;
            }
        });
        assert_eq!(y, [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0]);
    }
}
