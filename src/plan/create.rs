//! Making the target for the user: `--into lvm:VG/LV --on DEV...` (PV, VG,
//! LV) and `--into raid1 --on DEV` (a degraded RAID1 with metadata 1.2),
//! each step with the commands that undo it (a failure before the pivot
//! removes what was created), and `finish --reuse-old`, which adds the old
//! root's device to the array or the volume group afterwards. Also reads
//! `/proc/mdstat` for the resync that follows.
//!
//! Pure: arguments and facts in, argv lists out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `--into` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NewTarget {
    /// `lvm:VG/LV`: a logical volume, with its volume group made on `--on`
    /// when it does not exist.
    Lvm {
        /// Volume group.
        vg: String,
        /// Logical volume.
        lv: String,
    },
    /// `raid1[:NAME]`: a RAID1 made on `--on` with its second half missing.
    Raid1 {
        /// `/dev/md/NAME` (default `root`).
        name: String,
    },
}

/// Names LVM accepts for volume groups and volumes (lvm(8): letters,
/// digits and `+_.-`, not starting with `-`, not `.` or `..`).
fn lvm_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && !s.starts_with('-')
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

/// Parse `--into`: `lvm:VG/LV`, `raid1` or `raid1:NAME`.
pub fn parse_into(s: &str) -> Result<NewTarget, String> {
    if let Some(rest) = s.strip_prefix("lvm:") {
        let (vg, lv) = rest
            .split_once('/')
            .ok_or_else(|| format!("--into {s}: expected lvm:VG/LV, e.g. lvm:sys/root"))?;
        for (what, n) in [("volume group", vg), ("volume", lv)] {
            if !lvm_name_ok(n) {
                return Err(format!(
                    "--into {s}: {n:?} is not a valid LVM {what} name (letters, digits, + _ . -)"
                ));
            }
        }
        return Ok(NewTarget::Lvm {
            vg: vg.to_owned(),
            lv: lv.to_owned(),
        });
    }
    let name = match s.split_once(':') {
        Some(("raid1", n)) => n,
        None if s == "raid1" => "root",
        _ => {
            return Err(format!(
                "--into {s}: expected lvm:VG/LV or raid1[:NAME] (other RAID levels: make the array yourself and give it as the target)"
            ));
        }
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        return Err(format!(
            "--into {s}: {name:?} is not a valid array name (letters, digits, _ -)"
        ));
    }
    Ok(NewTarget::Raid1 {
        name: name.to_owned(),
    })
}

/// One command that creates something, with the commands that undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateStep {
    /// What it makes, for the plan and the journal.
    pub what: String,
    /// The command.
    pub argv: Vec<String>,
    /// The commands that remove what it made, in order.
    pub undo: Vec<Vec<String>>,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

fn disp(p: &Path) -> String {
    p.display().to_string()
}

/// The device the new root's filesystem goes on once `into` is made.
pub fn target_device(into: &NewTarget) -> PathBuf {
    match into {
        NewTarget::Lvm { vg, lv } => PathBuf::from(format!("/dev/{vg}/{lv}")),
        NewTarget::Raid1 { name } => PathBuf::from(format!("/dev/md/{name}")),
    }
}

/// The steps that make `into` on the devices `on`, sized `size` bytes
/// (LVM: rounded up by LVM to its extents; RAID1: the whole device).
/// `vg_exists` says whether the volume group is there already (then `on`
/// may be empty: the LV is made in its free space).
pub fn create_steps(
    into: &NewTarget,
    on: &[PathBuf],
    size: u64,
    vg_exists: bool,
) -> Result<Vec<CreateStep>, String> {
    match into {
        NewTarget::Lvm { vg, lv } => {
            if on.is_empty() && !vg_exists {
                return Err(format!(
                    "volume group {vg} does not exist: name its physical volumes with --on DEV"
                ));
            }
            let mut steps = Vec::new();
            for d in on {
                steps.push(CreateStep {
                    what: format!("LVM physical volume on {}", d.display()),
                    argv: argv(&["pvcreate", "--yes", &disp(d)]),
                    undo: vec![argv(&["pvremove", "--yes", &disp(d)])],
                });
            }
            let pvs: Vec<String> = on.iter().map(|d| disp(d)).collect();
            if !on.is_empty() {
                let mut a = if vg_exists {
                    argv(&["vgextend", vg])
                } else {
                    argv(&["vgcreate", vg])
                };
                a.extend(pvs.iter().cloned());
                let undo = if vg_exists {
                    let mut u = argv(&["vgreduce", vg]);
                    u.extend(pvs.iter().cloned());
                    vec![u]
                } else {
                    vec![argv(&["vgremove", "--yes", vg])]
                };
                steps.push(CreateStep {
                    what: format!("volume group {vg}"),
                    argv: a,
                    undo,
                });
            }
            let full = format!("{vg}/{lv}");
            steps.push(CreateStep {
                what: format!("logical volume {full} of {size} bytes"),
                argv: argv(&[
                    "lvcreate",
                    "--yes",
                    "--wipesignatures",
                    "y",
                    "-n",
                    lv,
                    "-L",
                    &format!("{size}b"),
                    vg,
                ]),
                undo: vec![argv(&["lvremove", "--yes", &full])],
            });
            Ok(steps)
        }
        NewTarget::Raid1 { name } => {
            let [dev] = on else {
                return Err(format!(
                    "--into raid1 needs exactly one --on DEV (the second half is the old root, added by `reroot finish --reuse-old`); got {}",
                    on.len()
                ));
            };
            let md = format!("/dev/md/{name}");
            Ok(vec![CreateStep {
                what: format!("degraded RAID1 {md} on {}", dev.display()),
                argv: argv(&[
                    "mdadm",
                    "--create",
                    &md,
                    "--run",
                    "--level=1",
                    "--metadata=1.2",
                    "--raid-devices=2",
                    &format!("--name={name}"),
                    &disp(dev),
                    "missing",
                ]),
                undo: vec![
                    argv(&["mdadm", "--stop", &md]),
                    argv(&["mdadm", "--zero-superblock", &disp(dev)]),
                ],
            }])
        }
    }
}

/// The steps of `finish --reuse-old`: wipe the old root's device (its
/// filesystem was released and re-identified) and add it to the array or the
/// volume group. Not undoable: the old root's data are gone after the first.
pub fn reuse_old_steps(into: &NewTarget, old: &Path) -> Vec<CreateStep> {
    let wipe = CreateStep {
        what: format!("wipe the old root {}", old.display()),
        argv: argv(&["wipefs", "--all", &disp(old)]),
        undo: Vec::new(),
    };
    match into {
        NewTarget::Raid1 { name } => {
            let md = format!("/dev/md/{name}");
            vec![
                wipe,
                CreateStep {
                    what: format!("add {} to {md} (the resync starts)", old.display()),
                    argv: argv(&["mdadm", "--manage", &md, "--add", &disp(old)]),
                    undo: Vec::new(),
                },
            ]
        }
        NewTarget::Lvm { vg, .. } => vec![
            wipe,
            CreateStep {
                what: format!("LVM physical volume on {}", old.display()),
                argv: argv(&["pvcreate", "--yes", &disp(old)]),
                undo: Vec::new(),
            },
            CreateStep {
                what: format!("add {} to volume group {vg}", old.display()),
                argv: argv(&["vgextend", vg, &disp(old)]),
                undo: Vec::new(),
            },
        ],
    }
}

/// One array of `/proc/mdstat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdStat {
    /// Kernel name (`md127`).
    pub name: String,
    /// `raid1`, ...
    pub level: String,
    /// Member kernel names, with `(F)` failed and `(S)` spare markers removed.
    pub members: Vec<String>,
    /// `[UU]` / `[U_]`: which halves are in sync.
    pub status: String,
    /// A running resync or recovery: its kind and percent done.
    pub sync: Option<(String, f64)>,
}

impl MdStat {
    /// Every member is in sync (no `_` in the status) and nothing runs.
    pub fn clean(&self) -> bool {
        !self.status.contains('_') && self.sync.is_none()
    }
}

/// Parse `/proc/mdstat`. Lines it does not understand are skipped.
pub fn parse_mdstat(text: &str) -> Vec<MdStat> {
    let mut out: Vec<MdStat> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.starts_with("md") && words.next() == Some(":") {
            let rest: Vec<&str> = words.collect();
            // "active raid1 vdb1[1] vda2[0]" (or "active (auto-read-only) raid1 ...")
            let level = rest
                .iter()
                .find(|w| w.starts_with("raid") || **w == "linear")
                .map_or_else(String::new, |w| (*w).to_owned());
            let members = rest
                .iter()
                .filter_map(|w| w.split_once('[').map(|(n, _)| n.to_owned()))
                .collect();
            out.push(MdStat {
                name: first.to_owned(),
                level,
                members,
                status: String::new(),
                sync: None,
            });
        } else if let Some(cur) = out.last_mut() {
            let t = line.trim();
            if let Some(s) = t.split_whitespace().find(|w| {
                w.starts_with('[') && w.ends_with(']') && w.chars().all(|c| "[]U_".contains(c))
            }) {
                cur.status = s.to_owned();
            }
            for kind in ["resync", "recovery", "reshape", "check"] {
                if let Some(after) = t.split(&format!("{kind} =")).nth(1) {
                    let pct = after
                        .split_whitespace()
                        .next()
                        .and_then(|p| p.trim_end_matches('%').parse::<f64>().ok());
                    if let Some(p) = pct {
                        cur.sync = Some((kind.to_owned(), p));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_parses_and_refuses_with_the_form() {
        assert_eq!(
            parse_into("lvm:sys/root").unwrap(),
            NewTarget::Lvm {
                vg: "sys".into(),
                lv: "root".into()
            }
        );
        assert_eq!(
            parse_into("raid1").unwrap(),
            NewTarget::Raid1 {
                name: "root".into()
            }
        );
        assert_eq!(
            parse_into("raid1:sys").unwrap(),
            NewTarget::Raid1 { name: "sys".into() }
        );
        for bad in [
            "lvm:sys",
            "lvm:-x/root",
            "lvm:sys/r o",
            "raid5",
            "raid1:",
            "raid1:a/b",
        ] {
            let e = parse_into(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn lvm_on_a_new_disk_makes_pv_vg_lv_and_undoes_in_reverse() {
        let into = parse_into("lvm:sys/root").unwrap();
        let steps = create_steps(&into, &["/dev/vdb".into()], 2 << 30, false).unwrap();
        let cmds: Vec<String> = steps.iter().map(|s| s.argv.join(" ")).collect();
        assert_eq!(
            cmds,
            vec![
                "pvcreate --yes /dev/vdb",
                "vgcreate sys /dev/vdb",
                "lvcreate --yes --wipesignatures y -n root -L 2147483648b sys",
            ]
        );
        let undo: Vec<String> = steps
            .iter()
            .rev()
            .flat_map(|s| s.undo.iter().map(|u| u.join(" ")))
            .collect();
        assert_eq!(
            undo,
            vec![
                "lvremove --yes sys/root",
                "vgremove --yes sys",
                "pvremove --yes /dev/vdb"
            ]
        );
        assert_eq!(target_device(&into), PathBuf::from("/dev/sys/root"));
        // An existing VG is extended and reduced, not created and removed.
        let steps = create_steps(&into, &["/dev/vdc".into()], 1 << 30, true).unwrap();
        assert_eq!(steps[1].argv.join(" "), "vgextend sys /dev/vdc");
        assert_eq!(steps[1].undo[0].join(" "), "vgreduce sys /dev/vdc");
        // Only an LV in an existing VG's free space.
        assert_eq!(create_steps(&into, &[], 1 << 30, true).unwrap().len(), 1);
        assert!(create_steps(&into, &[], 1 << 30, false).is_err());
    }

    #[test]
    fn raid1_is_made_degraded_on_one_device() {
        let into = parse_into("raid1").unwrap();
        let steps = create_steps(&into, &["/dev/vdb".into()], 0, false).unwrap();
        assert_eq!(
            steps[0].argv.join(" "),
            "mdadm --create /dev/md/root --run --level=1 --metadata=1.2 --raid-devices=2 --name=root /dev/vdb missing"
        );
        assert_eq!(steps[0].undo.len(), 2);
        let e = create_steps(&into, &["/dev/vdb".into(), "/dev/vdc".into()], 0, false).unwrap_err();
        assert!(e.contains("exactly one --on"), "{e}");
        let reuse = reuse_old_steps(&into, Path::new("/dev/vda2"));
        let cmds: Vec<String> = reuse.iter().map(|s| s.argv.join(" ")).collect();
        assert_eq!(
            cmds,
            vec![
                "wipefs --all /dev/vda2",
                "mdadm --manage /dev/md/root --add /dev/vda2"
            ]
        );
        let lvm = reuse_old_steps(&parse_into("lvm:sys/root").unwrap(), Path::new("/dev/vda2"));
        assert_eq!(lvm.last().unwrap().argv.join(" "), "vgextend sys /dev/vda2");
    }

    #[test]
    fn mdstat_shows_a_degraded_array_and_its_recovery() {
        let degraded = "Personalities : [raid1]\n\
            md127 : active raid1 vdb[0]\n      \
            10476544 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n";
        let a = parse_mdstat(degraded);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "md127");
        assert_eq!(a[0].level, "raid1");
        assert_eq!(a[0].members, vec!["vdb"]);
        assert_eq!(a[0].status, "[U_]");
        assert!(!a[0].clean());
        let recovering = "Personalities : [raid1]\n\
            md127 : active raid1 vda2[2] vdb[0]\n      \
            10476544 blocks super 1.2 [2/1] [U_]\n      \
            [=====>...............]  recovery = 27.5% (2883584/10476544) finish=0.4min speed=262144K/sec\n";
        let a = parse_mdstat(recovering);
        assert_eq!(a[0].members, vec!["vda2", "vdb"]);
        assert_eq!(a[0].sync, Some(("recovery".into(), 27.5)));
        let done =
            "md127 : active raid1 vda2[2] vdb[0]\n      10476544 blocks super 1.2 [2/2] [UU]\n";
        assert!(parse_mdstat(done)[0].clean());
        assert!(parse_mdstat("garbage\n: :\nmd0\n").is_empty());
    }
}
