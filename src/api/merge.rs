//! `GET /v1/events` on a cluster node: one stream of the whole cluster's events.
//!
//! The node opens its own platform stream and each live peer's (forwarded, so the peer
//! answers with its own events only), and passes their frames on as they come. Each
//! event's `id` becomes the cluster's cursor after it: every node's last id,
//! `node-a:17,node-b:9`; each node's position enters it after that node's replay (the
//! node's id-only position frame), before any of its live events. A client that
//! resumes with it gets, from each node, what followed that node's position (from
//! memory or the node's store), and from a node the cursor does not name (one that
//! joined since), what comes from now on. Order is each node's own; between
//! nodes, as the frames arrive (a conversation whose shard moves to another node may
//! show its first events there before the old node's last ones).
//!
//! When any of the streams ends (a node stops or falls behind, or the members change)
//! the merged stream ends too, and the client resumes with its last cursor: nothing is
//! skipped. A node the cursor names that is gone is read from the store the nodes
//! share, from its position on.

use std::collections::BTreeMap;

use actix_web::web::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

/// Every node's last event id, as a cluster stream's `id` carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor(pub BTreeMap<String, u64>);

impl Cursor {
    /// Reads `Last-Event-ID`: a cluster cursor (`node:id` pairs separated by commas),
    /// or a bare id, which is `here`'s.
    pub fn parse(text: &str, here: &str) -> Result<Cursor, String> {
        let text = text.trim();
        if let Ok(id) = text.parse::<u64>() {
            return Ok(Cursor(BTreeMap::from([(here.to_string(), id)])));
        }
        let mut nodes = BTreeMap::new();
        for pair in text.split(',') {
            let (node, id) = pair.split_once(':').ok_or_else(|| format!("{pair:?} is not NODE:ID"))?;
            let valid = !node.is_empty()
                && node.len() <= 64
                && node.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                return Err(format!("{node:?} is not a node name"));
            }
            let id = id.parse::<u64>().map_err(|_| format!("{id:?} is not an event id"))?;
            nodes.insert(node.to_string(), id);
        }
        Ok(Cursor(nodes))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (n, (node, id)) in self.0.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(node);
            out.push(':');
            out.push_str(&id.to_string());
        }
        out
    }
}

/// Cuts a byte stream into SSE frames (the text up to a blank line), decoding whole
/// frames only (a character split across two chunks stays whole).
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
            frames.push(String::from_utf8_lossy(&self.buf[..at]).into_owned());
            self.buf.drain(..at + 2);
        }
        frames
    }
}

/// One node's frame as the merged stream passes it on: an event gets the cursor as its
/// id (and so does a node's id-only position frame), a `gap` the node's name; comments
/// pass only from `keep_comments` (this node's: the hello and the keep-alives, one of
/// each and not one per node).
fn relay(frame: &str, node: &str, cursor: &mut Cursor, keep_comments: bool, out: &mut String) {
    if frame.starts_with(':') {
        if keep_comments {
            out.push_str(frame);
            out.push_str("\n\n");
        }
        return;
    }
    let mut lines = Vec::new();
    for line in frame.lines() {
        if let Some(id) = line.strip_prefix("id: ") {
            if let Ok(id) = id.trim().parse::<u64>() {
                cursor.0.insert(node.to_string(), id);
            }
            continue;
        }
        if let Some(data) = line.strip_prefix("data: {") {
            if frame.starts_with("event: gap") {
                lines.push(format!("data: {{\"node\": {}, {data}", serde_json::Value::from(node)));
                continue;
            }
        }
        lines.push(line.to_string());
    }
    if frame.lines().any(|l| l.starts_with("id: ")) {
        out.push_str("id: ");
        out.push_str(&cursor.render());
        out.push('\n');
    }
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
}

/// A node's stream: its name and its bytes.
pub type Source = (String, BoxStream<'static, Result<Bytes, String>>);

/// Merges the nodes' platform streams (the first is this node's). Ends when any ends.
pub fn merge(
    sources: Vec<Source>,
    cursor: Cursor,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
    let tagged = sources.into_iter().enumerate().map(|(i, (_, s))| {
        // Each source's end shows as a `None` of its own, so the merge can stop.
        s.map(move |chunk| (i, Some(chunk)))
            .chain(futures_util::stream::once(async move { (i, None) }))
            .boxed()
    });
    let all = futures_util::stream::select_all(tagged);
    let parsers: Vec<Frames> = names.iter().map(|_| Frames::default()).collect();
    futures_util::stream::unfold(
        (all, parsers, names, cursor, false),
        |(mut all, mut parsers, names, mut cursor, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let (i, chunk) = all.next().await?;
                let chunk = match chunk {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        tracing::info!(node = %names[i], error = %e, "a node's event stream failed; ending the cluster stream");
                        return None;
                    }
                    None => {
                        tracing::debug!(node = %names[i], "a node's event stream ended; ending the cluster stream");
                        return None;
                    }
                };
                let mut out = String::new();
                for frame in parsers[i].push(&chunk) {
                    relay(&frame, &names[i], &mut cursor, i == 0, &mut out);
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), (all, parsers, names, cursor, false)));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_a_bare_id_is_this_node_s() {
        let c = Cursor::parse("node-b:9,node-a:17", "x").expect("cursor");
        assert_eq!(c.render(), "node-a:17,node-b:9");
        assert_eq!(Cursor::parse(&c.render(), "x"), Ok(c));
        assert_eq!(Cursor::parse("42", "node-a").expect("id").render(), "node-a:42");
        for bad in ["", "node-a", "node-a:x", ":4", "a b:4", "node-a:4,", "node-a:-1"] {
            assert!(Cursor::parse(bad, "x").is_err(), "{bad:?}");
        }
    }

    /// Frames split anywhere across chunks come out whole; each event's id is the
    /// cursor after it, a gap names its node, only this node's comments pass.
    #[tokio::test]
    async fn frames_of_several_nodes_merge_with_the_cursor_as_their_id() {
        let here: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from(
                ": switchboard events\n\nid: 5\nevent: opened\ndata: {\"a\":1}\n\n",
            )),
            Ok(Bytes::from("id: 6\nevent: clo")),
            Ok(Bytes::from("sed\ndata: {}\n\n")),
        ];
        let there: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from(
                ": switchboard events\n\nevent: gap\ndata: {\"missed_from\": 1, \"oldest_kept\": 3}\n\n",
            )),
            Ok(Bytes::from("id: 3\nevent: assigned\ndata: {}\n\n")),
        ];
        // Sources that stay open (a pending tail) so that every frame is read.
        let open = |v: Vec<Result<Bytes, String>>| {
            futures_util::stream::iter(v)
                .chain(futures_util::stream::pending())
                .boxed()
        };
        let merged = merge(
            vec![("node-a".into(), open(here)), ("node-b".into(), open(there))],
            Cursor::parse("node-c:7", "node-a").expect("cursor"),
        );
        let mut merged = Box::pin(merged);
        let mut text = String::new();
        while text.matches("id: ").count() < 3 {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), merged.next())
                .await
                .expect("a chunk")
                .expect("open")
                .expect("bytes");
            text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        assert_eq!(text.matches(": switchboard events").count(), 1, "{text}");
        assert!(text.contains("id: node-a:5,node-c:7\nevent: opened\n"), "{text}");
        assert!(
            text.contains("id: node-a:6,node-c:7\nevent: closed\n")
                || text.contains("id: node-a:6,node-b:3,node-c:7\nevent: closed\n"),
            "{text}"
        );
        assert!(
            text.contains("event: gap\ndata: {\"node\": \"node-b\", \"missed_from\": 1, \"oldest_kept\": 3}\n"),
            "{text}"
        );
        assert!(
            text.contains(",node-b:3,") && text.contains("event: assigned"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_merged_stream_ends_when_a_node_s_stream_ends() {
        let here = futures_util::stream::pending().boxed();
        let there = futures_util::stream::iter(vec![Ok(Bytes::from("id: 1\nevent: opened\ndata: {}\n\n"))]).boxed();
        let merged = merge(vec![("a".into(), here), ("b".into(), there)], Cursor::default());
        let all: Vec<_> = tokio::time::timeout(std::time::Duration::from_secs(5), merged.collect::<Vec<_>>())
            .await
            .expect("ends");
        assert_eq!(all.len(), 1);
    }
}
