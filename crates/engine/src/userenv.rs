//! What the container runtime adds to a RUN step's environment beyond the image's: docker's runc
//! sets `HOME` from the step user's passwd entry when the environment has none, so `$HOME` and
//! tools writing there (`pip install --user`) land where they do under docker.

/// Appends `HOME` for `uid` unless `env` already has one: the passwd entry's home, else `/`
/// (runc's default for a user without an entry or an image without passwd).
pub(crate) fn add_home(env: &mut Vec<String>, passwd: Option<&[u8]>, uid: u32) {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let home = passwd
        .and_then(|p| rbuild_context::passwd::home_of_uid(&String::from_utf8_lossy(p), uid))
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] =
        b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    #[test]
    fn home_from_passwd_unless_set() {
        let mut env = vec!["PATH=/bin".to_string()];
        add_home(&mut env, Some(PASSWD), 1000);
        assert_eq!(env, ["PATH=/bin", "HOME=/home/alice"]);
        let mut env = Vec::new();
        add_home(&mut env, Some(PASSWD), 0);
        assert_eq!(env, ["HOME=/root"]);
        let mut env = Vec::new();
        add_home(&mut env, Some(PASSWD), 4242);
        assert_eq!(env, ["HOME=/"]);
        let mut env = Vec::new();
        add_home(&mut env, None, 0);
        assert_eq!(env, ["HOME=/"]);
        let mut env = vec!["HOME=/custom".to_string()];
        add_home(&mut env, Some(PASSWD), 0);
        assert_eq!(env, ["HOME=/custom"]);
    }
}
