//! Sinks: where an INSERT's rows go, checked against what the sink takes
//! (inserts only, or changes by its key).

use super::*;

impl Translator<'_> {
    /// The sink of an INSERT into `table`, fed by `stream`: refused when it
    /// takes inserts only and `stream` updates, and fed through an upsert
    /// materializer when its key is not the one `stream` updates by.
    pub(super) fn add_sink(
        &mut self,
        table: &Arc<TableDef>,
        stream: Stream,
        properties: &Properties,
        overwrite: bool,
    ) -> Result<()> {
        let context = ConnectorContext {
            overwrite,
            ..self.context.clone()
        };
        let sink = self.registry.create_sink(table, &context)?;
        if let Some((first, first_overwrites)) = self.written.get(&table.name) {
            if overwrite || *first_overwrites || !sink.allows_several_inserts() {
                return Err(self.error(format!(
                    "table `{}` is written by an INSERT at {first} already; its output is committed as one (its completeness marker, or the files an INSERT OVERWRITE replaces), so write one INSERT of a UNION ALL",
                    table.name
                )));
            }
        } else {
            self.written
                .insert(table.name.clone(), (self.location.clone(), overwrite));
        }
        let from = stream.schema.inner();
        if from.fields().len() != table.schema.fields().len() {
            return Err(self.error(format!(
                "the query yields {} columns but table `{}` has {}",
                from.fields().len(),
                table.name,
                table.schema.fields().len()
            )));
        }
        crate::changelog::check_no_reserved_column(&table.name, &table.schema)?;
        let updates = properties.changelog.updates();
        if updates && !sink.accepts_changes() {
            return Err(self.error(format!(
                "table `{}` ({}) takes inserts only, but {} sends it updates and deletes: \
                 write them to a sink that takes a changelog ('upsert-kafka', 'print', 'blackhole', or a filesystem table in 'format' = 'debezium-json'), \
                 or compute final results (aggregate over a window TVF, or run in batch mode)",
                table.name,
                sink.describe(),
                self.origin_of_updates(stream.node)
            )));
        }
        // An upsert sink whose key is not the one its input updates by
        // takes its changes through a materializer.
        let mut input = stream.node;
        let mut materialized = false;
        if let Some(key) = sink.input_key()
            && updates
            && !properties
                .upsert_key
                .as_ref()
                .is_some_and(|upstream| upstream.iter().all(|k| key.contains(k)))
        {
            input = self.add_upsert_materializer(input, &key);
            materialized = true;
        }
        let parallelism = self.graph.node(input).parallelism;
        let schema = self.physical_schema(&table.schema, input);
        // An upsert sink's writers each take all changes of their keys
        // (the materializer's subtasks already hold them so).
        let partitioning = match sink.input_key() {
            Some(_) if materialized => Partitioning::Forward,
            Some(columns) => Partitioning::Hash(
                columns
                    .iter()
                    .map(|&c| {
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            from.field(c).name(),
                            c,
                        )) as Arc<dyn PhysicalExpr>
                    })
                    .collect(),
            ),
            None => Partitioning::Forward,
        };
        let parallelism = match partitioning {
            Partitioning::Hash(_) => self.parallelism,
            _ => parallelism,
        };
        let id = self.add_node(
            NodeKind::Sink(SinkNode {
                table: Arc::clone(table),
                sink,
                overwrite,
            }),
            parallelism,
            schema,
        );
        self.connect(input, id, partitioning);
        Ok(())
    }

    /// An [`UpsertMaterialize`](crate::ops::upsert_materialize) after
    /// `input`, hash-partitioned by the sink's primary key `key`.
    fn add_upsert_materializer(&mut self, input: NodeId, key: &[usize]) -> NodeId {
        let schema = Arc::clone(&self.graph.node(input).schema);
        let data = crate::changelog::without_row_kind(&schema);
        let keys = key
            .iter()
            .map(|&c| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    data.field(c).name(),
                    c,
                )) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let op = crate::ops::upsert_materialize::UpsertMaterialize {
            schema: data,
            key: key.to_vec(),
        };
        self.add_operator(
            input,
            Arc::new(op),
            schema,
            Partitioning::Hash(keys),
            self.parallelism,
        )
    }
}
