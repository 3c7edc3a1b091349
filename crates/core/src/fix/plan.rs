//! The planner: from a parsed domain and the host's facts, decide which devices move where,
//! which PHBs are added or renumbered and which bridges go. It knows nothing of bytes; the
//! renderer turns a [`Plan`] into edits.
//!
//! The placement copies libvirt's (docs/libvirt.md, "Isolation groups") so that a fixed guest looks
//! like one libvirt placed itself: each IOMMU group gets one PHB, emulated devices fill the
//! default PHB first, moving devices are taken in libvirt's device order and each takes
//! function 0 of the first free slot from 1; an interface on a hostdev-pool network gets a PHB
//! to itself, as libvirt gives it an isolation group of its own. Unlike libvirt it keeps every
//! address that is already fine, so the diff stays small.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::Subject;
use crate::model::{Device, DeviceKind, PciAddr};
use crate::topology::{BUSES, Bus, MAX_PHBS, MAX_TARGET, PHB_MODEL_NAME, SLOTS, Topology};

use super::order;

/// Functions of a slot (0..=7).
const FUNCTIONS: u8 = 8;
/// How far `fix` goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Also give hostdevs without a guest address the one libvirt would pick, pinning it.
    pub assign_unaddressed: bool,
    /// Raise a `<memtune><hard_limit>` below what libvirt computes QEMU must lock to that
    /// figure (an admin's limit is a decision: it is raised only when asked).
    pub raise_hard_limit: bool,
    /// Leave at least this many spare PHBs (PHBs other than the default one with nothing on
    /// them) for hostdevs hot-plugged later, counting the ones the guest has; PHBs are added
    /// with the lowest free index and target index, as far as QEMU's 31 allow. 0: none added.
    pub spare_phbs: u8,
}

/// One change to the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The device at this position of [`Domain::devices`](crate::model::Domain::devices) gets a new guest address; `from`
    /// is `None` when it had none.
    Move {
        /// Position in [`Domain::devices`](crate::model::Domain::devices).
        device: usize,
        /// Its address before.
        from: Option<PciAddr>,
        /// Its address after.
        to: PciAddr,
    },
    /// A new PHB controller.
    AddPhb {
        /// The new controller's index (its bus number).
        index: u32,
        /// Its target index.
        target: u32,
        /// The guest NUMA cell it is tied to.
        node: Option<u32>,
    },
    /// A new PHB with nothing on it, kept for hot-plugs ([`Options::spare_phbs`]).
    AddSparePhb {
        /// The new controller's index (its bus number).
        index: u32,
        /// Its target index.
        target: u32,
        /// The guest NUMA cell it is tied to: spares are spread over the guest's cells.
        node: Option<u32>,
    },
    /// A PHB's `<target index>` is renumbered.
    Retarget {
        /// Position of the controller in [`Domain::devices`](crate::model::Domain::devices).
        device: usize,
        /// Its controller index.
        index: u32,
        /// The target index before.
        from: u32,
        /// The target index after.
        to: u32,
    },
    /// A bridge the move emptied is removed.
    RemoveController {
        /// Position of the bridge in [`Domain::devices`](crate::model::Domain::devices).
        device: usize,
        /// Its controller index.
        index: u32,
    },
    /// `<memtune><hard_limit>` is raised to what libvirt computes QEMU must lock.
    RaiseHardLimit {
        /// The limit before, in KiB.
        from_kib: u64,
        /// The limit after, in KiB.
        to_kib: u64,
    },
    /// A PHB's `<model name>` becomes `spapr-pci-host-bridge`, the only one pSeries has.
    SetPhbModel {
        /// Position of the PHB in [`Domain::devices`](crate::model::Domain::devices).
        device: usize,
        /// Its controller index.
        index: u32,
        /// The model name it had.
        from: String,
    },
}

/// Something the planner had to leave broken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfixable {
    /// What is left broken, in the domain the plan was made for.
    pub subject: Subject,
    /// How it names it: `hostdev 0002:02:00.0 at 0000:00:05.0`.
    pub device: String,
    /// Why it cannot be fixed.
    pub reason: String,
    /// The line of the input it starts on, where a report points an admin.
    pub line: Option<usize>,
}

/// What a rewrite changes, and what it has to leave broken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The changes, controllers first, then the moves.
    pub changes: Vec<Change>,
    /// What stays broken, and why.
    pub unfixable: Vec<Unfixable>,
    /// The spare PHBs asked for and kept.
    pub spares: Spares,
}

/// The spare PHBs of a rewrite ([`Options::spare_phbs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spares {
    /// How many were asked for.
    pub wanted: usize,
    /// How many the rewritten guest keeps once libvirt has placed its devices that have no
    /// address yet (more than `wanted` when it had more already); counted only when some are
    /// wanted.
    pub kept: usize,
    /// Why `kept` is less than `wanted`: no PHB could be added (QEMU's budget of 31).
    pub short: Option<String>,
}

impl Spares {
    /// What to tell the admin when fewer spare PHBs are kept than asked for.
    pub fn shortfall(&self) -> Option<String> {
        let why = self.short.as_deref()?;
        Some(format!(
            "{} spare PHB{} kept, not the {} asked for: {why}",
            self.kept,
            if self.kept == 1 { "" } else { "s" },
            self.wanted
        ))
    }
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Plans the rewrite of the topology's domain into one that keeps the isolation rule.
pub fn plan(topology: &Topology<'_>, options: Options) -> Plan {
    if !topology.pseries {
        return Plan::default();
    }
    let mut planner = Planner::new(topology);
    planner.set_phb_models();
    planner.retarget();
    planner.choose_homes();
    planner.route_hostdevs(options);
    planner.route_pool_interfaces();
    planner.remove_emptied_bridges();
    planner.route_emulated();
    planner.route_duplicates();
    planner.place();
    planner.keep_spares(usize::from(options.spare_phbs));
    let mut plan = planner.plan;
    // Reports read best as: what the controllers become (a removed bridge before the PHB that
    // may take its index), then what moves onto them.
    plan.changes.sort_by_key(|c| match c {
        Change::SetPhbModel { .. } | Change::Retarget { .. } | Change::RaiseHardLimit { .. } => 0,
        Change::RemoveController { .. } => 1,
        Change::AddPhb { .. } | Change::AddSparePhb { .. } => 2,
        Change::Move { .. } => 3,
    });
    plan
}

/// Where a moving device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Dest {
    /// The PHB of this host IOMMU group.
    Group(u32),
    /// A PHB without hostdevs.
    Emulated,
    /// A PHB with nothing else on it: an interface on a hostdev-pool network.
    Isolated,
    /// Another slot of the bus it is on: it only has to leave an address an earlier device
    /// holds.
    SameBus(u8),
}

/// Why no PHB can be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoPhb {
    /// The guest has QEMU's 31 (or no bus number is left).
    Budget { phbs: usize },
    /// Every target index in 1..30 is taken.
    NoTarget,
}

/// The PHB an IOMMU group ends up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    Bus(u8),
    /// A PHB still to be added, when the first of the group's devices is placed.
    New,
}

struct Planner<'t, 'd> {
    topology: &'t Topology<'d>,
    /// The topology's buses, and the PHBs the plan adds.
    buses: Vec<Bus>,
    /// Per device: where it moves, if it does.
    dest: Vec<Option<Dest>>,
    removed: Vec<bool>,
    /// Per device: whether an earlier device has its guest address (`pci-address-duplicate`).
    duplicate: Vec<bool>,
    homes: BTreeMap<u32, Home>,
    /// Buses that hold hostdevs once the rewrite is done.
    hostdev_buses: BTreeSet<u8>,
    /// Buses that hold a hostdev-pool interface, and nothing else, once the rewrite is done.
    pool_buses: BTreeSet<u8>,
    /// Per bus and slot, the functions taken.
    taken: Vec<[u8; 32]>,
    targets: BTreeSet<u32>,
    plan: Plan,
}

impl<'t, 'd> Planner<'t, 'd> {
    fn new(topology: &'t Topology<'d>) -> Self {
        let devices = topology.domain.devices.len();
        let mut duplicate = vec![false; devices];
        // The first holder keeps the address (libvirt complains about the later ones).
        let mut held = HashSet::new();
        for (i, addr) in topology.addressed() {
            duplicate[i] = !held.insert(addr);
        }
        Planner {
            topology,
            buses: (0..BUSES).map(|b| topology.bus(b as u8)).collect(),
            dest: vec![None; devices],
            removed: vec![false; devices],
            duplicate,
            homes: BTreeMap::new(),
            hostdev_buses: BTreeSet::new(),
            pool_buses: BTreeSet::new(),
            taken: vec![[0; 32]; BUSES],
            targets: BTreeSet::new(),
            plan: Plan::default(),
        }
    }

    fn device(&self, i: usize) -> &'d Device {
        self.topology.device(i)
    }

    fn unfixable(&mut self, device: usize, reason: String) {
        let dev = self.device(device);
        // A PHB is a controller, not a device on a bus: findings name it by its index.
        let subject = match &dev.kind {
            DeviceKind::PciController(c) if c.is_phb() => Subject::Controller(c.index),
            _ => Subject::Device(device),
        };
        self.plan.unfixable.push(Unfixable {
            subject,
            device: dev.describe(),
            reason,
            line: self.topology.line_of(subject),
        });
    }

    fn addressed(&self) -> impl Iterator<Item = (usize, PciAddr)> + use<'d> {
        self.topology.addressed()
    }

    /// A pSeries PHB has one model name: setting it needs no choice, so it is fixed.
    fn set_phb_models(&mut self) {
        for (i, c) in self.topology.written_phbs() {
            if let Some(name) = c.model_name.as_deref().filter(|n| *n != PHB_MODEL_NAME) {
                self.plan.changes.push(Change::SetPhbModel {
                    device: i,
                    index: c.index,
                    from: name.to_string(),
                });
            }
        }
    }

    fn known_group(&self, device: usize) -> Option<u32> {
        self.topology.known_group(device)
    }

    /// Whether the device at `i` is an interface on a hostdev-pool network.
    fn is_pool_interface(&self, i: usize) -> bool {
        // In device order, as the topology found them.
        self.topology.pool_interfaces().binary_search(&i).is_ok()
    }

    /// Whether `bus` is a PHB, the ones the plan adds included.
    fn is_phb(&self, bus: u8) -> bool {
        matches!(self.buses[bus as usize], Bus::Phb(_))
    }

    /// Keeps every target index that is valid and first, renumbers the rest: index 0 gets 0,
    /// the others the lowest free in 1..30, in controller index order.
    fn retarget(&mut self) {
        self.targets.insert(0);
        let mut phbs: Vec<_> = self.topology.written_phbs().collect();
        phbs.sort_by_key(|(_, c)| c.index);
        let mut renumber = Vec::new();
        for &(i, c) in &phbs {
            match (c.index, c.target_index) {
                (_, None) => {}
                (0, Some(0)) => {}
                (0, Some(t)) => self.plan.changes.push(Change::Retarget {
                    device: i,
                    index: 0,
                    from: t,
                    to: 0,
                }),
                (_, Some(t)) if (1..=MAX_TARGET).contains(&t) && self.targets.insert(t) => {}
                (_, Some(t)) => renumber.push((i, c.index, t)),
            }
        }
        for (device, index, from) in renumber {
            match self.free_target() {
                Some(to) => self.plan.changes.push(Change::Retarget {
                    device,
                    index,
                    from,
                    to,
                }),
                None => self.unfixable(
                    device,
                    format!("no free target index in 1..{MAX_TARGET} to replace {from}"),
                ),
            }
        }
    }

    fn free_target(&mut self) -> Option<u32> {
        let t = (1..=MAX_TARGET).find(|t| !self.targets.contains(t))?;
        self.targets.insert(t);
        Some(t)
    }

    /// Gives each IOMMU group the non-default PHB that holds most of its hostdevs, each PHB to
    /// one group at most, so that as few hostdevs as possible move.
    fn choose_homes(&mut self) {
        let mut candidates: Vec<((u32, u8), usize)> = Vec::new();
        for (g, phbs) in self.topology.groups_on_phbs() {
            candidates.extend(
                phbs.into_iter()
                    .filter(|&(bus, _)| bus != 0)
                    .map(|(bus, n)| ((g, bus), n)),
            );
        }
        candidates.sort_by_key(|&((g, bus), n)| (std::cmp::Reverse(n), bus, g));
        let mut owned = BTreeSet::new();
        for ((g, bus), _) in candidates {
            if !self.homes.contains_key(&g) && owned.insert(bus) {
                self.homes.insert(g, Home::Bus(bus));
            }
        }
    }

    /// Marks every hostdev that is not on its group's home PHB as moving, and finds homes for
    /// the groups that have none: an existing PHB with nothing on it, else a new one.
    fn route_hostdevs(&mut self, options: Options) {
        let mut homeless = Vec::new();
        for i in self.libvirt_order() {
            let dev = self.device(i);
            let DeviceKind::Hostdev { .. } = dev.kind else {
                continue;
            };
            let Some(addr) = dev.address else {
                if options.assign_unaddressed
                    && let Some(g) = self.known_group(i)
                {
                    self.dest[i] = Some(Dest::Group(g));
                    homeless.push(g);
                }
                continue;
            };
            match self.known_group(i) {
                Some(g) => {
                    if self.homes.get(&g) != Some(&Home::Bus(addr.bus)) {
                        self.dest[i] = Some(Dest::Group(g));
                        homeless.push(g);
                    }
                }
                None if addr.bus == 0 || !self.is_phb(addr.bus) => {
                    let why = match self.topology.group(i) {
                        Some(Err(e)) => e.to_string(),
                        _ => "its IOMMU group is unknown".into(),
                    };
                    self.unfixable(
                        i,
                        format!(
                            "has to move but its IOMMU group is unknown ({why}), so the PHB it may \
                             share cannot be chosen; give it a PHB by hand"
                        ),
                    );
                }
                // An unknown group on a PHB of its own stays where it is.
                None => {
                    self.hostdev_buses.insert(addr.bus);
                }
            }
        }
        let mut empty: Vec<u8> = (1..BUSES as u16)
            .map(|b| b as u8)
            .filter(|&b| self.is_phb(b))
            .filter(|&b| !self.addressed().any(|(_, a)| a.bus == b))
            .collect();
        empty.reverse();
        for g in homeless {
            if self.homes.contains_key(&g) {
                continue;
            }
            let home = empty.pop().map_or(Home::New, Home::Bus);
            self.homes.insert(g, home);
        }
        self.hostdev_buses
            .extend(self.homes.values().filter_map(|h| match h {
                Home::Bus(b) => Some(*b),
                Home::New => None,
            }));
    }

    /// An interface on a hostdev-pool network keeps its place only on a PHB that has nothing
    /// else staying on it (the first such interface there, in libvirt's order); every other
    /// one moves to a PHB of its own. Its VF, so its IOMMU group, is only chosen at start.
    fn route_pool_interfaces(&mut self) {
        let interfaces: Vec<usize> = self
            .libvirt_order()
            .into_iter()
            .filter(|&i| self.is_pool_interface(i))
            .collect();
        for i in interfaces {
            let Some(bus) = self.device(i).address.map(|a| a.bus) else {
                continue;
            };
            // Other pool interfaces there are judged in their turn: the first one keeps the bus.
            let others_stay = self
                .addressed()
                .any(|(j, a)| a.bus == bus && !self.is_pool_interface(j) && self.dest[j].is_none());
            let alone = bus != 0
                && self.is_phb(bus)
                && !self.hostdev_buses.contains(&bus)
                && !self.pool_buses.contains(&bus)
                && !others_stay;
            if alone {
                self.pool_buses.insert(bus);
            } else {
                self.dest[i] = Some(Dest::Isolated);
            }
        }
    }

    /// A bridge is removed when every device on its bus moved away (or was itself removed).
    fn remove_emptied_bridges(&mut self) {
        loop {
            let mut changed = false;
            for bus in 0..BUSES {
                let Bus::Bridge(bridge) = self.buses[bus] else {
                    continue;
                };
                if self.removed[bridge] || self.device(bridge).model_attr.as_deref() != Some("pci-bridge") {
                    continue;
                }
                let mut on_it = self
                    .addressed()
                    .filter(|&(_, a)| a.bus as usize == bus)
                    .peekable();
                if on_it.peek().is_none() {
                    continue;
                }
                let leaving = |i: usize| self.dest[i].is_some() || self.removed[i];
                if on_it.all(|(i, _)| leaving(i)) {
                    self.removed[bridge] = true;
                    self.plan.changes.push(Change::RemoveController {
                        device: bridge,
                        index: bus as u32,
                    });
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Emulated devices on a PHB that keeps hostdevs move to one without.
    fn route_emulated(&mut self) {
        let moving: Vec<usize> = self
            .addressed()
            .filter(|&(i, a)| {
                !matches!(self.device(i).kind, DeviceKind::Hostdev { .. })
                    && !self.is_pool_interface(i)
                    && !self.removed[i]
                    && self.hostdev_buses.contains(&a.bus)
            })
            .map(|(i, _)| i)
            .collect();
        for i in moving {
            self.dest[i] = Some(Dest::Emulated);
        }
    }

    /// Every device that repeats the address of an earlier device that stays, and is not
    /// moving anyway, takes another slot of its own bus. When the earlier holders all move
    /// away, the first later one keeps the address.
    fn route_duplicates(&mut self) {
        let mut held = HashSet::new();
        for (i, addr) in self.addressed().collect::<Vec<_>>() {
            if self.dest[i].is_some() || self.removed[i] {
                continue;
            }
            if !held.insert(addr) {
                self.dest[i] = Some(Dest::SameBus(addr.bus));
            }
        }
    }

    /// Device positions in libvirt's assignment order.
    fn libvirt_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.topology.domain.devices.len()).collect();
        order.sort_by_key(|&i| order::rank(self.device(i)));
        order
    }

    /// Hands out slots to the moving devices, adding PHBs where needed.
    fn place(&mut self) {
        for (i, addr) in self.addressed().collect::<Vec<_>>() {
            if self.dest[i].is_none() && !self.removed[i] {
                self.taken[addr.bus as usize][addr.slot as usize] |= 1 << addr.function;
            }
        }
        // Buses emulated devices may go to, in libvirt's preference: the default PHB, then
        // PHBs with emulated devices only; then PHBs that are empty; then new ones.
        let mut emulated_buses: Vec<u8> = vec![0];
        let mut empty_buses = Vec::new();
        for b in 1..BUSES {
            let b = b as u8;
            if !self.is_phb(b) || self.hostdev_buses.contains(&b) || self.pool_buses.contains(&b) {
                continue;
            }
            if self.taken[b as usize].iter().any(|&f| f != 0) {
                emulated_buses.push(b);
            } else {
                empty_buses.push(b);
            }
        }
        empty_buses.reverse();
        for unit in self.units() {
            let first = unit[0];
            let dest = self.dest[first].expect("units hold moving devices");
            let placed = match dest {
                Dest::Group(g) => self.group_bus(g, first).and_then(|bus| {
                    let slot = self.free_slot(bus);
                    if slot.is_none() {
                        self.unfixable(
                            first,
                            format!("PHB index {bus} of IOMMU group {g} has no free slot"),
                        );
                    }
                    slot.map(|s| (bus, s))
                }),
                Dest::SameBus(bus) => match self.free_slot(bus) {
                    Some(slot) => Some((bus, slot)),
                    // An emulated device may go anywhere emulated devices go.
                    None if self.device(first).host_addr().is_none() => {
                        self.emulated_slot(&mut emulated_buses, &mut empty_buses, first)
                    }
                    None => {
                        self.unfixable(
                            first,
                            format!(
                                "repeats an earlier device's address and bus {bus}, where its IOMMU \
                                 group is, has no free slot left; free a slot on it by hand"
                            ),
                        );
                        None
                    }
                },
                Dest::Emulated => self.emulated_slot(&mut emulated_buses, &mut empty_buses, first),
                Dest::Isolated => empty_buses
                    .pop()
                    .or_else(|| self.add_phb(None, first))
                    .and_then(|bus| {
                        self.pool_buses.insert(bus);
                        self.free_slot(bus).map(|s| (bus, s))
                    }),
            };
            let Some((bus, slot)) = placed else { continue };
            self.put(&unit, bus, slot);
        }
    }

    /// A slot for an emulated device: the first free one of `emulated_buses`, else one of an
    /// empty PHB, else of a new PHB.
    fn emulated_slot(
        &mut self,
        emulated_buses: &mut Vec<u8>,
        empty_buses: &mut Vec<u8>,
        first: usize,
    ) -> Option<(u8, u8)> {
        let found = emulated_buses
            .iter()
            .find_map(|&b| self.free_slot(b).map(|s| (b, s)));
        found.or_else(|| {
            let bus = empty_buses.pop().or_else(|| self.add_phb(None, first))?;
            emulated_buses.push(bus);
            self.free_slot(bus).map(|s| (bus, s))
        })
    }

    /// Moving devices grouped into what shares a slot: the functions of one source slot that
    /// go to the same place stay together; everything else, and every device that repeats an
    /// earlier address, takes a slot of its own. So a unit never holds one function twice.
    fn units(&self) -> Vec<Vec<usize>> {
        let mut by_slot: HashMap<(Dest, u8, u8), usize> = HashMap::new();
        let mut units: Vec<Vec<usize>> = Vec::new();
        for i in self.libvirt_order() {
            let Some(dest) = self.dest[i] else { continue };
            match self.device(i).address {
                // A pool interface shares its slot with nothing: it takes a PHB of its own.
                Some(a) if !self.duplicate[i] && dest != Dest::Isolated => {
                    let unit = *by_slot.entry((dest, a.bus, a.slot)).or_insert_with(|| {
                        units.push(Vec::new());
                        units.len() - 1
                    });
                    units[unit].push(i);
                }
                _ => units.push(vec![i]),
            }
        }
        units
    }

    /// The bus of group `g`, adding its PHB when the group has none yet.
    fn group_bus(&mut self, g: u32, first: usize) -> Option<u8> {
        match self.homes.get(&g).copied() {
            Some(Home::Bus(b)) => Some(b),
            _ => {
                let node = self.group_node(g);
                let bus = self.add_phb(node, first)?;
                self.homes.insert(g, Home::Bus(bus));
                self.hostdev_buses.insert(bus);
                Some(bus)
            }
        }
    }

    /// The guest NUMA cell a PHB for group `g` belongs to: the one `<numatune><memnode>`
    /// backs with the host node of the group's devices, when there is exactly one.
    fn group_node(&self, g: u32) -> Option<u32> {
        let devices = 0..self.topology.domain.devices.len();
        let mut nodes = devices
            .filter(|&i| self.known_group(i) == Some(g))
            .map(|i| self.topology.numa_node(i));
        let node = nodes.next()??;
        if !nodes.all(|n| n == Some(node)) {
            return None;
        }
        let mut cells = self
            .topology
            .domain
            .memnodes
            .iter()
            .filter(|m| m.host_nodes.contains(&node))
            .map(|m| m.cell);
        let cell = cells.next()?;
        cells.next().is_none().then_some(cell)
    }

    /// Adds a PHB with the lowest free controller index and target index.
    fn add_phb(&mut self, node: Option<u32>, first: usize) -> Option<u8> {
        let reason = match self.next_phb() {
            Ok((index, target)) => {
                self.plan.changes.push(Change::AddPhb {
                    index: u32::from(index),
                    target,
                    node,
                });
                return Some(index);
            }
            Err(NoPhb::Budget { phbs }) => {
                let needed = self.phbs_needed();
                if needed > MAX_PHBS {
                    format!(
                        "needs a PHB of its own, but the guest needs {needed} PHBs (the default one and \
                         one per IOMMU group of its hostdevs{}) and QEMU allows at most {MAX_PHBS} \
                         (SPAPR_MAX_PHBS, index 0 included); give the guest fewer IOMMU groups",
                        if self.topology.pool_interfaces().is_empty() {
                            ""
                        } else {
                            " and per interface on a hostdev pool"
                        }
                    )
                } else {
                    format!(
                        "needs a new PHB but the guest already has {phbs}, the most QEMU allows is \
                         {MAX_PHBS} (SPAPR_MAX_PHBS); remove the PHBs it does not use"
                    )
                }
            }
            Err(NoPhb::NoTarget) => {
                format!("needs a new PHB but no target index in 1..{MAX_TARGET} is free")
            }
        };
        self.unfixable(first, reason);
        None
    }

    /// The PHBs the rewritten guest needs at the least: the default one, one per IOMMU group
    /// of the hostdevs it places, one per interface on a hostdev pool.
    fn phbs_needed(&self) -> usize {
        let mut groups: Vec<u32> = (0..self.topology.domain.devices.len())
            .filter(|&i| self.device(i).address.is_some() || self.dest[i].is_some())
            .filter_map(|i| self.known_group(i))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        1 + groups.len() + self.topology.pool_interfaces().len()
    }

    /// Takes the lowest free controller index and target index for a new PHB, or says why
    /// there is none.
    fn next_phb(&mut self) -> Result<(u8, u32), NoPhb> {
        let phbs = self.buses.iter().filter(|b| matches!(b, Bus::Phb(_))).count();
        // A removed bridge's index is free again: leaving it unused would make libvirt fill
        // the gap with an empty PHB of its own.
        let index = (1..BUSES).find(|&b| match self.buses[b] {
            Bus::Unused => true,
            Bus::Bridge(dev) => self.removed[dev],
            Bus::Phb(_) => false,
        });
        let (Some(index), true) = (index, phbs < MAX_PHBS) else {
            return Err(NoPhb::Budget { phbs });
        };
        let Some(target) = self.free_target() else {
            return Err(NoPhb::NoTarget);
        };
        self.buses[index] = Bus::Phb(None);
        Ok((index as u8, target))
    }

    /// Adds PHBs until the rewritten guest keeps `wanted` spare ones: PHBs other than the
    /// default one with nothing on them once libvirt has placed the devices that have no
    /// address yet. With guest NUMA cells, each new one goes to the cell with the fewest spares
    /// (the lowest cell first), so a hot-plugged device can be given a PHB near its host node.
    fn keep_spares(&mut self, wanted: usize) {
        if wanted == 0 {
            return;
        }
        let empty: Vec<u8> = (1..BUSES)
            .filter(|&b| matches!(self.buses[b], Bus::Phb(_)))
            .filter(|&b| self.taken[b].iter().all(|&f| f == 0))
            .map(|b| b as u8)
            .filter(|b| !self.hostdev_buses.contains(b) && !self.pool_buses.contains(b))
            .collect();
        // libvirt adds PHBs of its own for what finds no empty one: only the empty ones beyond
        // what it takes stay spare.
        let claimed = self.claimed_at_define();
        let mut empties = empty.len();
        // With one cell (or none) a node would say nothing: every PHB is near all the memory.
        let cells = &self.topology.domain.numa_cells;
        let mut cells: BTreeMap<u32, usize> = if cells.len() > 1 {
            cells.iter().map(|&c| (c, 0)).collect()
        } else {
            BTreeMap::new()
        };
        for &bus in &empty {
            let node = self.topology.controller(bus).and_then(|c| c.numa_node);
            if let Some(n) = node.and_then(|node| cells.get_mut(&node)) {
                *n += 1;
            }
        }
        let mut short = None;
        let domain = self.topology.domain;
        // A PHB is written beside the devices, else inside `<devices>...</devices>`.
        let writable = !domain.devices.is_empty() || domain.devices_close.is_some();
        while empties < wanted + claimed {
            let node = cells
                .iter()
                .min_by_key(|&(&cell, &n)| (n, cell))
                .map(|(&cell, _)| cell);
            if !writable {
                short = Some("the definition has no <devices> element to add them to".to_string());
                break;
            }
            match self.next_phb() {
                Ok((index, target)) => {
                    self.plan.changes.push(Change::AddSparePhb {
                        index: u32::from(index),
                        target,
                        node,
                    });
                    if let Some(n) = node.and_then(|node| cells.get_mut(&node)) {
                        *n += 1;
                    }
                    empties += 1;
                }
                Err(no) => {
                    short = Some(match no {
                        NoPhb::Budget { phbs } => {
                            format!("the guest already has {phbs}, the most QEMU allows is {MAX_PHBS}")
                        }
                        NoPhb::NoTarget => format!("no target index in 1..{MAX_TARGET} is free"),
                    });
                    break;
                }
            }
        }
        self.plan.spares = Spares {
            wanted,
            kept: empties.saturating_sub(claimed),
            short,
        };
    }

    /// Empty PHBs libvirt takes at define for devices that have no address yet and need a PHB
    /// of their own: the first empty PHB, before it adds one (`virDomainPCIAddressGetNextAddr`),
    /// for each IOMMU group of such hostdevs that has no PHB, and for each such interface on a
    /// hostdev pool.
    fn claimed_at_define(&self) -> usize {
        let mut groups = BTreeSet::new();
        let mut interfaces = 0;
        for (i, device) in self.topology.domain.devices.iter().enumerate() {
            if device.address.is_some() || self.dest[i].is_some() {
                continue;
            }
            if device.host_addr().is_some() {
                if let Some(g) = self.known_group(i)
                    && !matches!(self.homes.get(&g), Some(Home::Bus(_)))
                {
                    groups.insert(g);
                }
            } else if self.topology.joins_hostdev_pool(i) {
                interfaces += 1;
            }
        }
        groups.len() + interfaces
    }

    fn free_slot(&self, bus: u8) -> Option<u8> {
        SLOTS.clone().find(|&s| self.taken[bus as usize][s as usize] == 0)
    }

    /// Puts a unit in `slot` of `bus`: a slot that moves whole with its function 0 keeps its
    /// functions, anything else is numbered from function 0 up.
    fn put(&mut self, unit: &[usize], bus: u8, slot: u8) {
        let keep = unit
            .iter()
            .any(|&i| self.device(i).address.is_some_and(|a| a.function == 0));
        let mut members: Vec<usize> = unit.to_vec();
        members.sort_by_key(|&i| (self.device(i).address.map(|a| a.function), i));
        for (n, &i) in members.iter().enumerate() {
            let from = self.device(i).address;
            let function = match from {
                Some(a) if keep => a.function,
                _ => match u8::try_from(n).ok().filter(|&f| f < FUNCTIONS) {
                    Some(f) => f,
                    // units() gives a slot at most one device per function; should that ever
                    // fail, the device is reported, never wrapped onto another's function.
                    None => {
                        self.unfixable(i, "no function of its new slot is left for it".into());
                        continue;
                    }
                },
            };
            self.taken[bus as usize][slot as usize] |= 1 << function;
            let to = PciAddr {
                domain: 0,
                bus,
                slot,
                function,
            };
            self.plan.changes.push(Change::Move { device: i, from, to });
        }
    }
}
