//! What the kafka crate's integration tests share.

use engine::{CompiledPlan, EngineConfig};
use std::sync::Arc;

/// The shipped `pipelines/`, as one bundle's runnable plan.
pub fn pipelines_plan() -> Arc<CompiledPlan> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let files = dsl::files::bundle_files(std::path::Path::new(dir)).expect("pipelines dir");
    let (bundle, _) = dsl::bundle::Bundle::build(files, 1, Default::default())
        .unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    Arc::new(CompiledPlan::from_bundle(&bundle, EngineConfig::default()).expect("runnable"))
}
