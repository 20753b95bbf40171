//! A line-oriented text dump of a graph, stable enough to snapshot.

use std::fmt::Write;

use crate::graph::Graph;
use crate::op::ParamKind;
use crate::shape::fmt_shape;

impl Graph {
    /// The graph as text: inputs, then one line per node with its op,
    /// attributes, inputs and output type, and its parameters indented below;
    /// then parameters no node reads, then outputs.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_dump(&mut s);
        s
    }

    fn write_dump(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "graph {}", self.name)?;
        for (k, v) in &self.metadata {
            writeln!(s, "meta {k} = {v}")?;
        }
        for &i in &self.inputs {
            let v = &self.values[i];
            writeln!(s, "input {}: {}", v.name, v.ty)?;
        }
        let mut read = vec![false; self.params.len()];
        for n in &self.nodes {
            let inputs: Vec<&str> = n
                .inputs
                .iter()
                .map(|&i| self.values.get(i).map_or("?", |v| v.name.as_str()))
                .collect();
            let attrs = n.op.to_string();
            let sep = if attrs.is_empty() { "" } else { " " };
            let out = self
                .values
                .get(n.output)
                .map(|v| v.ty.to_string())
                .unwrap_or_default();
            writeln!(
                s,
                "{} = {}{sep}{attrs} ({}) -> {out}",
                n.name,
                n.op.name(),
                inputs.join(", ")
            )?;
            for &p in &n.params {
                if let Some(param) = self.params.get(p) {
                    read[p] = true;
                    writeln!(s, "    {}", param_line(param))?;
                }
            }
        }
        for (p, _) in self.params.iter().zip(&read).filter(|(_, r)| !**r) {
            writeln!(s, "unread {}", param_line(p))?;
        }
        for o in &self.outputs {
            let v = &self.values[o.value];
            let note = if o.training_only {
                " (training only)"
            } else {
                ""
            };
            writeln!(s, "output {} = {}: {}{note}", o.name, v.name, v.ty)?;
        }
        Ok(())
    }
}

fn param_line(p: &crate::graph::Param) -> String {
    let kind = match p.kind {
        ParamKind::Trainable => "param",
        ParamKind::Buffer => "buffer",
    };
    let dims: Vec<crate::shape::Dim> = p
        .shape
        .iter()
        .map(|&d| crate::shape::Dim::Fixed(d))
        .collect();
    let bound = if p.data.is_some() { " bound" } else { "" };
    format!("{kind} {}: {}{}{bound}", p.name, p.dtype, fmt_shape(&dims))
}
