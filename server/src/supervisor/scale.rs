//! Scaling an app to N instances: new instances (ports kept clear of
//! overrides, started when the app runs) or removal of the highest ones.

use std::sync::Arc;

use pmdaemon_proto::Target;

use crate::error::{Error, Result};
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::Plan;
use super::lifecycle::{Action, first_error};
use super::port_checks::assign_ports;
use super::table::InstanceView;

impl Supervisor {
    /// Grows or shrinks app `name` to `count` instances. Shrinking stops and
    /// removes the highest indexes first. Returns the app's instances and the
    /// change in count.
    pub(super) async fn resize(&self, name: &str, count: u32) -> Result<(Vec<InstanceView>, i64)> {
        self.check_running()?;
        let target = Target::Name(name.to_string());
        let (old_count, new_ids, removed_ids, running) = {
            let mut table = self.table();
            let others = table.claims_except(&[name]);
            let next_id = table.next_id;
            let app = table.app(name).ok_or_else(|| Error::NotFound {
                target: name.to_string(),
            })?;
            // New instances follow the app: started if any of its instances
            // is meant to run, else added stopped.
            let running = app
                .instances
                .iter()
                .any(|i| i.shared.locked().desired_running);
            let old_spec = app.spec().ok_or_else(|| Error::NotFound {
                target: name.to_string(),
            })?;
            let mut spec = (*old_spec).clone();
            spec.instances = count;
            spec.validate()?;
            let old_count = app.instances.len() as u32;
            let ports = if count > old_count {
                let mut others = others.clone();
                others.extend(app.override_claim());
                assign_ports(&spec, &others, &app.assigned_ports())?
            } else {
                Vec::new()
            };
            let launch = app.instances[0].plan.locked().launch.clone();
            let spec = Arc::new(spec);
            let mut added = Vec::new();
            for index in old_count..count {
                let id = next_id + (index - old_count);
                added.push(self.new_instance(
                    id,
                    index,
                    Plan::new(
                        spec.clone(),
                        launch.clone(),
                        ports.get(index as usize).copied(),
                    ),
                    None,
                    0,
                )?);
            }
            let app = table.app_mut(name).expect("app exists: checked above");
            for inst in &app.instances {
                inst.plan.locked().spec = spec.clone();
            }
            let removed_ids: Vec<u32> = app
                .instances
                .iter()
                .filter(|i| i.index >= count)
                .map(|i| i.id)
                .collect();
            let new_ids: Vec<u32> = added.iter().map(|i| i.id).collect();
            app.instances.extend(added);
            table.next_id += count.saturating_sub(old_count);
            (old_count, new_ids, removed_ids, running)
        };
        for id in new_ids.iter().filter(|_| running) {
            first_error(self.act(&Target::Id(*id), Action::Start).await?)?;
        }
        if !removed_ids.is_empty() {
            let views: Vec<InstanceView> = self
                .views(&target)?
                .into_iter()
                .filter(|v| removed_ids.contains(&v.id))
                .collect();
            self.remove(&removed_ids).await;
            self.remove_logs(&views);
            self.announce_deleted(&views);
        }
        self.inner.persister.request();
        tracing::info!(app = %name, from = old_count, to = count, "scaled");
        Ok((
            self.views(&target)?,
            i64::from(count) - i64::from(old_count),
        ))
    }
}
