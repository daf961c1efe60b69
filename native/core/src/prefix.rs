//! The prefix cache's index: which cached prompt is the longest prefix of a new one.
//!
//! A radix tree over token ids. The KV caches themselves stay in Python; the index holds
//! only their handles and sizes, and decides what to evict, least recently used first,
//! under a byte budget and an entry budget.

use std::collections::{BTreeMap, HashMap};

use crate::error::{CoreError, CoreResult};

const ROOT: usize = 0;

#[derive(Debug, Default)]
struct Node {
    /// The tokens on the edge from the parent; empty only at the root.
    edge: Vec<u32>,
    parent: usize,
    /// Children by the first token of their edge, sorted: a node has few children, and a
    /// sorted vector searches them faster than a hash map would.
    children: Vec<(u32, usize)>,
    handle: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    node: usize,
    nbytes: u64,
    /// The clock reading of the last use: the entry's key in `lru`.
    used: u64,
}

/// Nodes live in one arena and refer to each other by index. Every node but the root
/// holds an entry or has at least two children, so the tree never keeps dead chains.
#[derive(Debug)]
pub struct PrefixIndex {
    max_bytes: u64,
    max_entries: usize,
    nodes: Vec<Node>,
    free: Vec<usize>,
    entries: HashMap<u64, Entry>,
    /// Handles by last use, oldest first: the eviction order.
    lru: BTreeMap<u64, u64>,
    clock: u64,
    bytes: u64,
}

impl PrefixIndex {
    pub fn new(max_bytes: u64, max_entries: usize) -> CoreResult<Self> {
        if max_entries == 0 {
            return Err(CoreError::InvalidArgument(
                "max_entries must be at least 1".into(),
            ));
        }
        Ok(Self {
            max_bytes,
            max_entries,
            nodes: vec![Node::default()],
            free: Vec::new(),
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            bytes: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of every entry together; never more than `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Stores `handle` under `tokens` and returns the handles that left the index: first a
    /// different handle stored under the same tokens (replaced), then the least recently used
    /// entries evicted to make room. Storing a handle again under its own tokens only updates
    /// its size and use; a handle already stored under other tokens is refused.
    pub fn insert(&mut self, tokens: &[u32], handle: u64, nbytes: u64) -> CoreResult<Vec<u64>> {
        if nbytes > self.max_bytes {
            return Err(CoreError::InvalidArgument(format!(
                "an entry of {nbytes} bytes exceeds the prefix cache budget of {} bytes",
                self.max_bytes
            )));
        }
        let previous = self.find(tokens).and_then(|node| self.nodes[node].handle);
        if previous != Some(handle) && self.entries.contains_key(&handle) {
            return Err(CoreError::InvalidArgument(format!(
                "handle {handle} is already in the prefix index under other tokens"
            )));
        }
        let mut evicted = Vec::new();
        if let Some(previous) = previous {
            self.detach(previous);
            if previous != handle {
                evicted.push(previous);
            }
        }
        // Room is made before the new entry goes in, so it is never its own victim and the
        // byte count cannot overflow (`nbytes <= max_bytes`).
        while self.entries.len() >= self.max_entries || self.bytes > self.max_bytes - nbytes {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            self.detach(oldest);
            evicted.push(oldest);
        }
        let node = self.attach(tokens);
        self.nodes[node].handle = Some(handle);
        self.clock += 1;
        self.entries.insert(
            handle,
            Entry {
                node,
                nbytes,
                used: self.clock,
            },
        );
        self.lru.insert(self.clock, handle);
        self.bytes += nbytes;
        Ok(evicted)
    }

    /// The entry whose tokens are the longest prefix of `tokens` (all of them counts), and
    /// that prefix's length; the entry becomes the most recently used.
    pub fn longest_prefix(&mut self, tokens: &[u32]) -> Option<(u64, usize)> {
        let (handle, len) = self.deepest_entry(tokens)?;
        self.touch(handle);
        Some((handle, len))
    }

    /// The entry sharing the most leading tokens with `tokens`, and how many it shares; the
    /// entry becomes the most recently used. It may be longer than `tokens` (a cached
    /// conversation the prompt is a prefix of, or branches from): a prefix of a trimmable
    /// cache serves as well. Among equals, an entry that is a prefix of `tokens` wins.
    pub fn longest_common(&mut self, tokens: &[u32]) -> Option<(u64, usize)> {
        let prefix = self.deepest_entry(tokens);
        let (below, common) = self.deepest_shared(tokens);
        let longer = if common > prefix.map_or(0, |(_, len)| len) {
            self.any_entry_under(below).map(|handle| (handle, common))
        } else {
            None
        };
        let (handle, len) = longer.or(prefix)?;
        self.touch(handle);
        Some((handle, len))
    }

    /// Takes out every entry whose tokens are a proper prefix of `tokens` and returns their
    /// handles: a trimmable cache of `tokens` serves all of them.
    pub fn remove_prefixes(&mut self, tokens: &[u32]) -> Vec<u64> {
        let mut handles: Vec<u64> = self
            .walk(tokens)
            .filter(|&(_, pos)| pos < tokens.len())
            .filter_map(|(node, _)| self.nodes[node].handle)
            .collect();
        if !tokens.is_empty() {
            handles.extend(self.nodes[ROOT].handle);
        }
        for &handle in &handles {
            self.detach(handle);
        }
        handles
    }

    /// Takes an entry out; false if the handle is not in the index.
    pub fn remove(&mut self, handle: u64) -> bool {
        self.detach(handle).is_some()
    }

    fn child(&self, node: usize, token: u32) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&token, |&(first, _)| first)
            .ok()
            .map(|i| children[i].1)
    }

    /// Follows `tokens` down whole edges while they match.
    fn walk<'a>(&'a self, tokens: &'a [u32]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let mut node = ROOT;
        let mut pos = 0;
        std::iter::from_fn(move || {
            let child = self.child(node, *tokens.get(pos)?)?;
            let edge = &self.nodes[child].edge;
            if !tokens[pos..].starts_with(edge) {
                return None;
            }
            node = child;
            pos += edge.len();
            Some((node, pos))
        })
    }

    fn deepest_entry(&self, tokens: &[u32]) -> Option<(u64, usize)> {
        let root = self.nodes[ROOT].handle.map(|handle| (handle, 0));
        self.walk(tokens)
            .filter_map(|(node, pos)| self.nodes[node].handle.map(|handle| (handle, pos)))
            .last()
            .or(root)
    }

    /// How far `tokens` runs down the tree, partial edges included, and the node whose
    /// subtree holds every entry sharing that much.
    fn deepest_shared(&self, tokens: &[u32]) -> (usize, usize) {
        let mut node = ROOT;
        let mut pos = 0;
        while let Some(child) = tokens.get(pos).and_then(|&t| self.child(node, t)) {
            let edge = &self.nodes[child].edge;
            let common = edge
                .iter()
                .zip(&tokens[pos..])
                .take_while(|(a, b)| a == b)
                .count();
            node = child;
            pos += common;
            if common < edge.len() {
                break;
            }
        }
        (node, pos)
    }

    /// Some entry in `node`'s subtree: every leaf holds one, so the first-child path finds it.
    fn any_entry_under(&self, mut node: usize) -> Option<u64> {
        loop {
            if let Some(handle) = self.nodes[node].handle {
                return Some(handle);
            }
            node = self.nodes[node].children.first()?.1;
        }
    }

    /// The node at exactly `tokens`, if there is one.
    fn find(&self, tokens: &[u32]) -> Option<usize> {
        if tokens.is_empty() {
            return Some(ROOT);
        }
        self.walk(tokens)
            .find(|&(_, pos)| pos == tokens.len())
            .map(|(node, _)| node)
    }

    fn touch(&mut self, handle: u64) {
        let Some(entry) = self.entries.get_mut(&handle) else {
            return;
        };
        self.lru.remove(&entry.used);
        self.clock += 1;
        entry.used = self.clock;
        self.lru.insert(self.clock, handle);
    }

    fn detach(&mut self, handle: u64) -> Option<Entry> {
        let entry = self.entries.remove(&handle)?;
        self.lru.remove(&entry.used);
        self.bytes -= entry.nbytes;
        self.nodes[entry.node].handle = None;
        self.prune(entry.node);
        Some(entry)
    }

    /// The node at `tokens`, made by adding a leaf and splitting an edge where needed.
    fn attach(&mut self, tokens: &[u32]) -> usize {
        let mut node = ROOT;
        let mut pos = 0;
        while pos < tokens.len() {
            let rest = &tokens[pos..];
            let Some(child) = self.child(node, rest[0]) else {
                let leaf = self.alloc(Node {
                    edge: rest.to_vec(),
                    parent: node,
                    ..Node::default()
                });
                self.link(node, leaf);
                return leaf;
            };
            let edge = &self.nodes[child].edge;
            let common = edge.iter().zip(rest).take_while(|(a, b)| a == b).count();
            node = if common == edge.len() {
                child
            } else {
                self.split(child, common)
            };
            pos += common;
        }
        node
    }

    /// Cuts `node`'s edge after `at` tokens; returns the new node holding the first part.
    fn split(&mut self, node: usize, at: usize) -> usize {
        let parent = self.nodes[node].parent;
        let tail = self.nodes[node].edge.split_off(at);
        let head = std::mem::replace(&mut self.nodes[node].edge, tail);
        let first = head[0];
        let middle = self.alloc(Node {
            edge: head,
            parent,
            children: vec![(self.nodes[node].edge[0], node)],
            handle: None,
        });
        self.nodes[node].parent = middle;
        self.relink(parent, first, middle);
        middle
    }

    /// After `node` lost its entry: drops it if it is a leaf, merges it into its child if it
    /// has only one, so every node but the root still holds an entry or branches.
    fn prune(&mut self, node: usize) {
        if node == ROOT {
            return;
        }
        match self.nodes[node].children.len() {
            0 => {
                let parent = self.nodes[node].parent;
                let first = self.nodes[node].edge[0];
                let children = &mut self.nodes[parent].children;
                if let Ok(i) = children.binary_search_by_key(&first, |&(t, _)| t) {
                    children.remove(i);
                }
                self.release(node);
                let parent_node = &self.nodes[parent];
                if parent != ROOT && parent_node.handle.is_none() && parent_node.children.len() == 1
                {
                    self.merge_into_child(parent);
                }
            }
            1 => self.merge_into_child(node),
            _ => {}
        }
    }

    /// The child takes over `node`'s place; entries keep their node, since the child keeps
    /// its index.
    fn merge_into_child(&mut self, node: usize) {
        let child = self.nodes[node].children[0].1;
        let parent = self.nodes[node].parent;
        let mut edge = std::mem::take(&mut self.nodes[node].edge);
        let first = edge[0];
        edge.extend_from_slice(&self.nodes[child].edge);
        self.nodes[child].edge = edge;
        self.nodes[child].parent = parent;
        self.relink(parent, first, child);
        self.release(node);
    }

    fn link(&mut self, parent: usize, child: usize) {
        let first = self.nodes[child].edge[0];
        let children = &mut self.nodes[parent].children;
        let at = children.partition_point(|&(t, _)| t < first);
        children.insert(at, (first, child));
    }

    fn relink(&mut self, parent: usize, first: u32, child: usize) {
        let children = &mut self.nodes[parent].children;
        if let Ok(i) = children.binary_search_by_key(&first, |&(t, _)| t) {
            children[i].1 = child;
        }
    }

    fn alloc(&mut self, node: Node) -> usize {
        if let Some(index) = self.free.pop() {
            self.nodes[index] = node;
            index
        } else {
            self.nodes.push(node);
            self.nodes.len() - 1
        }
    }

    fn release(&mut self, node: usize) {
        self.nodes[node] = Node::default();
        self.free.push(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> PrefixIndex {
        PrefixIndex::new(1 << 40, usize::MAX).unwrap()
    }

    /// The tree's invariants, checked from the root down.
    fn check(index: &PrefixIndex) {
        let mut seen = 0;
        let mut stack = vec![ROOT];
        while let Some(node) = stack.pop() {
            seen += 1;
            let n = &index.nodes[node];
            if node != ROOT {
                assert!(!n.edge.is_empty(), "empty edge at {node}");
                assert!(
                    n.handle.is_some() || n.children.len() >= 2,
                    "dead node {node}: {n:?}"
                );
            }
            if let Some(handle) = n.handle {
                assert_eq!(index.entries[&handle].node, node);
            }
            assert!(n.children.windows(2).all(|w| w[0].0 < w[1].0));
            for &(first, child) in &n.children {
                assert_eq!(index.nodes[child].edge[0], first);
                assert_eq!(index.nodes[child].parent, node);
                stack.push(child);
            }
        }
        assert_eq!(seen, index.nodes.len() - index.free.len(), "leaked nodes");
        assert_eq!(index.lru.len(), index.entries.len());
        let bytes: u64 = index.entries.values().map(|e| e.nbytes).sum();
        assert_eq!(bytes, index.bytes);
        assert!(index.bytes <= index.max_bytes);
        assert!(index.entries.len() <= index.max_entries);
    }

    #[test]
    fn finds_the_longest_prefix_across_shared_edges() {
        let mut ix = index();
        ix.insert(&[1, 2, 3, 4], 1, 1).unwrap();
        ix.insert(&[1, 2, 5, 6], 2, 1).unwrap();
        ix.insert(&[1, 2, 3, 4, 7, 8], 3, 1).unwrap();
        check(&ix);
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 9]), Some((1, 4)));
        assert_eq!(ix.longest_prefix(&[1, 2, 5, 6, 7]), Some((2, 4)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 7, 8, 9]), Some((3, 6)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 7]), Some((1, 4)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3]), None);
        assert_eq!(ix.longest_prefix(&[1, 2]), None);
        assert_eq!(ix.longest_prefix(&[9, 1, 2, 3, 4]), None);
    }

    #[test]
    fn an_exact_match_counts() {
        let mut ix = index();
        ix.insert(&[5, 6, 7], 1, 1).unwrap();
        assert_eq!(ix.longest_prefix(&[5, 6, 7]), Some((1, 3)));
    }

    #[test]
    fn inserting_splits_edges() {
        let mut ix = index();
        ix.insert(&[1, 2, 3, 4, 5], 1, 1).unwrap();
        ix.insert(&[1, 2, 3], 2, 1).unwrap();
        check(&ix);
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 9]), Some((2, 3)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4]), Some((2, 3)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 5, 6]), Some((1, 5)));
        // A branch inside an edge: the split node holds no entry.
        ix.insert(&[1, 2, 7], 3, 1).unwrap();
        check(&ix);
        assert_eq!(ix.longest_prefix(&[1, 2]), None);
        assert_eq!(ix.longest_prefix(&[1, 2, 7, 7]), Some((3, 3)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 5]), Some((1, 5)));
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_byte_budget() {
        let mut ix = PrefixIndex::new(30, usize::MAX).unwrap();
        ix.insert(&[1, 1], 1, 10).unwrap();
        ix.insert(&[2, 2], 2, 10).unwrap();
        ix.insert(&[3, 3], 3, 10).unwrap();
        assert_eq!(ix.longest_prefix(&[1, 1, 5]), Some((1, 2)));
        assert_eq!(ix.insert(&[4, 4], 4, 10).unwrap(), vec![2]);
        assert_eq!(ix.insert(&[5, 5], 5, 25).unwrap(), vec![3, 1, 4]);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.bytes(), 25);
        check(&ix);
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_entry_budget() {
        let mut ix = PrefixIndex::new(1000, 2).unwrap();
        ix.insert(&[1], 1, 1).unwrap();
        ix.insert(&[2], 2, 1).unwrap();
        ix.longest_prefix(&[1]);
        assert_eq!(ix.insert(&[3], 3, 1).unwrap(), vec![2]);
        assert_eq!(ix.insert(&[4], 4, 1).unwrap(), vec![1]);
        check(&ix);
    }

    #[test]
    fn same_tokens_replace_the_previous_handle() {
        let mut ix = index();
        ix.insert(&[1, 2, 3], 1, 10).unwrap();
        ix.insert(&[1, 2, 3, 4], 2, 10).unwrap();
        assert_eq!(ix.insert(&[1, 2, 3], 3, 7).unwrap(), vec![1]);
        assert_eq!((ix.len(), ix.bytes()), (2, 17));
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 9]), Some((3, 3)));
        // The same handle again: a new size, nothing leaves.
        assert_eq!(ix.insert(&[1, 2, 3], 3, 4).unwrap(), Vec::<u64>::new());
        assert_eq!((ix.len(), ix.bytes()), (2, 14));
        check(&ix);
    }

    #[test]
    fn refuses_a_handle_stored_under_other_tokens_and_oversized_entries() {
        let mut ix = PrefixIndex::new(100, 10).unwrap();
        ix.insert(&[1, 2], 1, 10).unwrap();
        assert!(matches!(
            ix.insert(&[1, 3], 1, 10),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            ix.insert(&[4], 2, 101),
            Err(CoreError::InvalidArgument(_))
        ));
        assert_eq!((ix.len(), ix.bytes()), (1, 10));
        assert!(PrefixIndex::new(100, 0).is_err());
        check(&ix);
    }

    #[test]
    fn removing_collapses_nodes() {
        let mut ix = index();
        ix.insert(&[1, 2, 3, 4], 1, 1).unwrap();
        ix.insert(&[1, 2, 3, 5], 2, 1).unwrap();
        ix.insert(&[1, 2], 3, 1).unwrap();
        ix.insert(&[1, 2, 3, 4, 6], 4, 1).unwrap();
        check(&ix);
        assert!(ix.remove(3));
        assert!(!ix.remove(3));
        check(&ix);
        assert!(ix.remove(2));
        check(&ix);
        // [1, 2, 3] lost its branch: one edge down to [1, 2, 3, 4] remains.
        assert_eq!(ix.nodes[ROOT].children.len(), 1);
        let top = ix.nodes[ROOT].children[0].1;
        assert_eq!(ix.nodes[top].edge, vec![1, 2, 3, 4]);
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4, 6, 7]), Some((4, 5)));
        assert!(ix.remove(1));
        assert!(ix.remove(4));
        check(&ix);
        assert_eq!(ix.nodes.len() - ix.free.len(), 1);
        assert!(ix.is_empty());
        assert_eq!(ix.bytes(), 0);
    }

    #[test]
    fn the_empty_prompt_is_a_prefix_of_everything() {
        let mut ix = index();
        assert_eq!(ix.longest_prefix(&[]), None);
        ix.insert(&[1, 2], 1, 1).unwrap();
        assert_eq!(ix.longest_prefix(&[]), None);
        ix.insert(&[], 2, 1).unwrap();
        assert_eq!(ix.longest_prefix(&[]), Some((2, 0)));
        assert_eq!(ix.longest_prefix(&[7, 8]), Some((2, 0)));
        assert_eq!(ix.longest_prefix(&[1, 2, 3]), Some((1, 2)));
        assert!(ix.remove(2));
        assert_eq!(ix.longest_prefix(&[7, 8]), None);
        check(&ix);
    }

    /// The same operations on a plain list: the longest prefix by brute force, LRU by scan.
    #[test]
    fn longest_common_finds_longer_and_branching_entries() {
        let mut ix = index();
        ix.insert(&[1, 2], 10, 1).unwrap();
        ix.insert(&[1, 2, 3, 4, 5], 11, 1).unwrap();
        // The prompt is a prefix of a cached conversation.
        assert_eq!(ix.longest_common(&[1, 2, 3]), Some((11, 3)));
        // It branches off one after sharing four tokens.
        assert_eq!(ix.longest_common(&[1, 2, 3, 4, 9]), Some((11, 4)));
        // A stored prefix as long as the shared part wins.
        assert_eq!(ix.longest_common(&[1, 2, 7]), Some((10, 2)));
        assert_eq!(ix.longest_common(&[9]), None);
        assert_eq!(ix.longest_common(&[1, 2, 3, 4, 5, 6]), Some((11, 5)));
    }

    #[test]
    fn remove_prefixes_keeps_the_entry_itself_and_others() {
        let mut ix = index();
        ix.insert(&[1], 1, 1).unwrap();
        ix.insert(&[1, 2], 2, 1).unwrap();
        ix.insert(&[1, 2, 3], 3, 1).unwrap();
        ix.insert(&[1, 5], 4, 1).unwrap();
        let mut gone = ix.remove_prefixes(&[1, 2, 3]);
        gone.sort_unstable();
        assert_eq!(gone, vec![1, 2]);
        assert_eq!(ix.len(), 2);
        check(&ix);
        assert_eq!(ix.longest_prefix(&[1, 2, 3, 4]), Some((3, 3)));
    }

    #[test]
    fn agrees_with_a_brute_force_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut ix = PrefixIndex::new(200, 12).unwrap();
        // (tokens, handle, nbytes, last use)
        let mut model: Vec<(Vec<u32>, u64, u64, u64)> = Vec::new();
        let mut clock = 0;
        for handle in 0..5_000_u64 {
            let len = next(6) as usize;
            let tokens: Vec<u32> = (0..len).map(|_| next(3) as u32).collect();
            clock += 1;
            match next(3) {
                0 => {
                    let nbytes = next(40);
                    let mut expected = Vec::new();
                    if let Some(i) = model.iter().position(|e| e.0 == tokens) {
                        expected.push(model.remove(i).1);
                    }
                    while model.len() >= 12 || model.iter().map(|e| e.2).sum::<u64>() + nbytes > 200
                    {
                        let oldest = (0..model.len()).min_by_key(|&i| model[i].3).unwrap();
                        expected.push(model.remove(oldest).1);
                    }
                    model.push((tokens.clone(), handle, nbytes, clock));
                    assert_eq!(ix.insert(&tokens, handle, nbytes).unwrap(), expected);
                }
                1 => {
                    let best = model
                        .iter_mut()
                        .filter(|e| tokens.starts_with(&e.0))
                        .max_by_key(|e| e.0.len());
                    let expected = best.map(|e| {
                        e.3 = clock;
                        (e.1, e.0.len())
                    });
                    assert_eq!(ix.longest_prefix(&tokens), expected);
                }
                _ if !model.is_empty() => {
                    let victim = model.remove(next(model.len() as u64) as usize).1;
                    assert!(ix.remove(victim));
                }
                _ => {}
            }
            check(&ix);
        }
    }
}
