//! The build graph: what the front end's plan becomes before anything runs.
//!
//! Vocabulary: a *vertex* is one op with the vertices whose results it reads (its *inputs*); a
//! *step* is one Dockerfile instruction as the user sees it (numbered, with a line). Most vertices
//! carry one step; a vertex that several stages share (the same op on the same inputs) carries
//! each of their steps and runs once; a base image is a vertex with no step.
//!
//! Every vertex's result is a layer chain ([`crate::chain::Chain`]). The solver knows only vertices, inputs, keys and
//! results: Dockerfile rules (ARG scoping, ONBUILD, shell form, the image config) stay in
//! `lower`, which builds this graph.

use std::collections::HashMap;

use rbuild_digest::Digest;

use crate::key::Key;
use crate::ops::Op;
use crate::progress::StepId;

/// Index of a vertex in [`Graph::vertices`].
pub(crate) type VertexId = usize;

/// One instruction as shown and explained: its display id, and what identifies "the same step"
/// across builds (so a cache miss can be explained against its previous run).
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub id: StepId,
    /// Dockerfile, stage and position of the instruction (see `explain`).
    pub lineage: Digest,
    /// Build arguments the step's environment had (for "build argument X changed").
    pub args: Vec<(String, String)>,
}

/// An op and its place in the graph.
pub(crate) struct Vertex {
    pub op: Op,
    /// Vertices whose results the op reads; for file and exec ops the first is the filesystem
    /// the op changes.
    pub inputs: Vec<VertexId>,
    /// Vertices that must finish first only so steps are reported in file order (config-only
    /// steps between the op and its filesystem input).
    pub after: Vec<VertexId>,
    /// The steps this vertex stands for (none for a base image).
    pub steps: Vec<Step>,
}

/// The vertices, in an order where every input comes before its users.
#[derive(Default)]
pub(crate) struct Graph {
    pub vertices: Vec<Vertex>,
    /// Identity (op definition + input ids) → vertex, so identical ops are added once.
    by_identity: HashMap<Digest, VertexId>,
}

impl Graph {
    /// Adds an op, or merges it into an identical one already in the graph (same definition on
    /// the same inputs), which then runs once for both steps.
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        after: Vec<VertexId>,
        step: Option<Step>,
    ) -> VertexId {
        let identity = op.shareable().then(|| {
            let mut k = Key::new();
            op.define(&mut k);
            k.list("inputs", inputs.len());
            for i in &inputs {
                k.u64("#", *i as u64);
            }
            k.finish()
        });
        if let Some(&v) = identity.as_ref().and_then(|d| self.by_identity.get(d)) {
            let vx = &mut self.vertices[v];
            for a in after {
                if a != v && !vx.after.contains(&a) {
                    vx.after.push(a);
                }
            }
            vx.steps.extend(step);
            return v;
        }
        let id = self.vertices.len();
        self.vertices.push(Vertex {
            op,
            inputs,
            after,
            steps: step.into_iter().collect(),
        });
        if let Some(d) = identity {
            self.by_identity.insert(d, id);
        }
        id
    }

    /// Vertices `targets` need, directly or not (the others are never run).
    pub fn needed(&self, targets: &[VertexId]) -> Vec<bool> {
        let mut need = vec![false; self.vertices.len()];
        let mut todo: Vec<VertexId> = targets.to_vec();
        while let Some(v) = todo.pop() {
            if std::mem::replace(&mut need[v], true) {
                continue;
            }
            let vx = &self.vertices[v];
            todo.extend(vx.inputs.iter().chain(&vx.after).copied());
        }
        need
    }
}
