//! Topic matching: MQTT-style filters for subscriptions and access-control resources.
//!
//! Subscriptions may use `+` (exactly one level) and `#` (this level and all below, last level
//! only). Access-control resources additionally accept `*`, which matches any run of characters
//! (`*` alone allows every topic), as in Greengrass recipes.

/// Whether the MQTT-style `filter` matches the concrete `topic`.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether an access-control `resource` covers `topic`.
///
/// `topic` is what the component asked for: a concrete topic for publish, possibly a filter for
/// subscribe. A filter is authorised by a resource naming it literally, by `*`, or by a resource
/// whose wildcards cover it as if it were a concrete topic.
pub fn resource_matches(resource: &str, topic: &str) -> bool {
    if resource == topic || resource == "*" {
        return true;
    }
    if resource.contains('*') {
        return glob(resource.as_bytes(), topic.as_bytes());
    }
    filter_matches(resource, topic)
}

/// `*`-only glob; iterative with single backtrack point, so linear-ish and never recursive.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_filters() {
        assert!(filter_matches("local/inference", "local/inference"));
        assert!(!filter_matches("local/inference", "local/result"));
        assert!(filter_matches("local/+", "local/result"));
        assert!(!filter_matches("local/+", "local/a/b"));
        assert!(filter_matches("local/#", "local/a/b"));
        assert!(filter_matches("local/#", "local"));
        assert!(filter_matches("#", "anything/at/all"));
        assert!(!filter_matches("local/inference/x", "local/inference"));
    }

    #[test]
    fn resources() {
        assert!(resource_matches("*", "x/y"));
        assert!(resource_matches("local/*", "local/a/b"));
        assert!(resource_matches("lo*/res*t", "local/result"));
        assert!(!resource_matches("local/*", "remote/a"));
        assert!(resource_matches("local/+", "local/result"));
        assert!(resource_matches("local/#", "local/result/x"));
        assert!(resource_matches("local/#", "local/#"));
        assert!(!resource_matches("local/result", "local/#"));
    }
}
