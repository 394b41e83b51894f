//! An image that stands in for `amazon/dynamodb-local`, built here where no registry can be reached.
//!
//! It holds the cached, checksum-verified DynamoDB Local distribution and this machine's Java
//! runtime with the shared libraries it needs (found with `ldd`), laid out like the official image:
//! the distribution in `/home/dynamodblocal`, the working directory, and `java` as the entry point,
//! so that the same command line runs either. Linux only: the runtime is copied from the host.
//!
//! Its tag carries a hash of its inputs (every file's path, size and modification time, and the
//! recipe's version), so that it is built once and rebuilt only when Java or the distribution
//! changes; a build removes the images of the same repository that it supersedes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, UNIX_EPOCH};

use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use testcontainers::bollard::query_parameters::{
    CreateImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
};
use tokio_tar::{EntryType, Header};

use super::container::Engine;
use super::{LocalError, VERSION, ensure_installed, find_java};

/// The repository of the images built here.
pub const IMAGE_REPOSITORY: &str = "dynamo-migrate/dynamodb-local";
/// Changes whenever the layout below does, so that an older build is not taken for this one.
const RECIPE: &str = "dynamo-migrate image recipe 1";
const WORKDIR: &str = "/home/dynamodblocal";
const JAVA_HOME: &str = "/opt/java";
const LABEL_INPUTS: &str = "dev.dynamo-migrate.inputs";

/// An image of DynamoDB Local that the engine has.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `repository:tag`, to pass as the image to run.
    pub name: String,
    /// False when an image of the same inputs was already there.
    pub built: bool,
    /// How long building it (or finding it there) took, in seconds.
    pub seconds: f64,
}

/// Builds the image from the cache and this machine's Java, unless it is already there.
pub async fn build_image(cache: &Path) -> Result<BuiltImage, LocalError> {
    let start = Instant::now();
    let fail = |name: &str, reason: String| LocalError::Image { name: name.to_owned(), reason };
    let cache = cache.to_owned();
    let inputs = tokio::task::spawn_blocking(move || -> Result<Inputs, LocalError> {
        let dist = ensure_installed(&cache)?;
        let java = find_java().ok_or(LocalError::NoJava)?;
        Inputs::collect(&java, &dist)
    })
    .await
    .map_err(|e| LocalError::Io(std::io::Error::other(e)))??;
    let digest = inputs.digest();
    let tag = format!("{VERSION}-{}", &digest[..16]);
    let name = format!("{IMAGE_REPOSITORY}:{tag}");

    let engine = Engine::connect().await.map_err(|e| fail(&name, e))?;
    if engine.docker.inspect_image(&name).await.is_ok() {
        return Ok(BuiltImage { name, built: false, seconds: start.elapsed().as_secs_f64() });
    }

    let archive = std::env::temp_dir().join(format!("dynamo-migrate-image-{}.tar", std::process::id()));
    let result = async {
        inputs.write_tar(&archive).await.map_err(|e| format!("cannot write the image's files: {e}"))?;
        let file = tokio::fs::File::open(&archive).await.map_err(|e| e.to_string())?;
        let body = testcontainers::bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(IMAGE_REPOSITORY)
            .tag(&tag)
            .changes(vec![
                format!("WORKDIR {WORKDIR}"),
                format!("ENV PATH={JAVA_HOME}/bin:/usr/bin:/bin"),
                r#"ENTRYPOINT ["java"]"#.to_owned(),
                r#"CMD ["-jar", "DynamoDBLocal.jar", "-inMemory"]"#.to_owned(),
                "EXPOSE 8000".to_owned(),
                format!("LABEL {LABEL_INPUTS}={digest}"),
            ])
            .build();
        let mut progress = engine.docker.create_image(Some(options), Some(body), None);
        while let Some(info) = progress.next().await {
            let info = info.map_err(|e| format!("the engine refused the import: {e}"))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(format!("the engine refused the import: {error}"));
            }
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&archive);
    result.map_err(|e| fail(&name, e))?;
    remove_superseded(&engine, &name).await;
    Ok(BuiltImage { name, built: true, seconds: start.elapsed().as_secs_f64() })
}

/// Removes the other tags of the repository: each was built from inputs that are gone.
async fn remove_superseded(engine: &Engine, current: &str) {
    let filters = std::collections::HashMap::from([("reference", vec![IMAGE_REPOSITORY.to_owned()])]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    let Ok(images) = engine.docker.list_images(Some(options)).await else { return };
    for tag in images.iter().flat_map(|i| i.repo_tags.iter()).filter(|t| *t != current) {
        // Not forced: an image a container still uses stays until the next build.
        let removed = engine.docker.remove_image(tag, Some(RemoveImageOptionsBuilder::new().build()), None).await;
        if removed.is_ok() {
            tracing::info!("removed the superseded image {tag}");
        }
    }
}

/// The image's files: where each comes from and where it goes.
struct Inputs {
    /// Path in the image → file on this machine (symbolic links resolved).
    files: BTreeMap<String, PathBuf>,
}

impl Inputs {
    fn collect(java: &Path, dist: &Path) -> Result<Inputs, LocalError> {
        let fail = |reason: String| LocalError::Image { name: IMAGE_REPOSITORY.to_owned(), reason };
        if !cfg!(target_os = "linux") {
            return Err(fail("the image is built from this machine's Java, which needs Linux".to_owned()));
        }
        let java = which(java).ok_or_else(|| fail(format!("cannot find {} on PATH", java.display())))?;
        let java = java.canonicalize()?;
        let home = java
            .parent()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .ok_or_else(|| fail(format!("{} has no home", java.display())))?;
        let mut files = BTreeMap::new();
        files.insert(format!("{JAVA_HOME}/bin/java"), java.clone());
        for sub in ["lib", "conf", "legal", "release"] {
            add_tree(&mut files, &home.join(sub), &format!("{JAVA_HOME}/{sub}"))?;
        }
        // Only javac reads these; they are a tenth of the runtime.
        files.retain(|dest, _| !dest.ends_with("/lib/ct.sym") && !dest.ends_with("/lib/src.zip"));
        add_tree(&mut files, dist, WORKDIR)?;

        let mut objects = vec![java];
        objects.extend(files.values().filter(|p| p.extension().is_some_and(|e| e == "so")).cloned());
        for library in shared_libraries(&objects).map_err(fail)? {
            let resolved = library.canonicalize()?;
            // Java's own libraries are in the image already, under its home.
            if resolved.starts_with(&home) {
                continue;
            }
            // Where the loader looks for it (a path in its cache or default folders), not where a
            // symbolic link leads.
            files.insert(library.to_string_lossy().into_owned(), resolved);
        }
        Ok(Inputs { files })
    }

    /// SHA-256 over the recipe and every file's path, size and modification time.
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(RECIPE.as_bytes());
        for (dest, src) in &self.files {
            let meta = std::fs::metadata(src).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hasher.update(format!("{dest}\0{size}\0{mtime}\n").as_bytes());
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Writes the image's root file system as a tar archive, parent folders before their files.
    async fn write_tar(&self, archive: &Path) -> std::io::Result<()> {
        let file = tokio::fs::File::create(archive).await?;
        let mut tar = tokio_tar::Builder::new(file);
        tar.follow_symlinks(true);
        let mut folders: Vec<String> = vec!["/tmp".to_owned()];
        for dest in self.files.keys() {
            let mut path = Path::new(dest);
            while let Some(parent) = path.parent().filter(|p| *p != Path::new("/")) {
                folders.push(parent.to_string_lossy().into_owned());
                path = parent;
            }
        }
        folders.sort();
        folders.dedup();
        for folder in &folders {
            let mut header = Header::new_gnu();
            header.set_entry_type(EntryType::Directory);
            // Java keeps its performance data in /tmp, as any user.
            header.set_mode(if folder == "/tmp" { 0o1777 } else { 0o755 });
            header.set_size(0);
            tar.append_data(&mut header, folder.trim_start_matches('/'), tokio::io::empty()).await?;
        }
        for (dest, src) in &self.files {
            tar.append_path_with_name(src, dest.trim_start_matches('/')).await?;
        }
        tar.into_inner().await?;
        Ok(())
    }
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Adds every file under `src` (following symbolic links; dangling ones are left out) as `dest/…`.
fn add_tree(files: &mut BTreeMap<String, PathBuf>, src: &Path, dest: &str) -> std::io::Result<()> {
    let Ok(meta) = std::fs::metadata(src) else { return Ok(()) };
    if meta.is_file() {
        files.insert(dest.to_owned(), src.canonicalize()?);
        return Ok(());
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        add_tree(files, &entry.path(), &format!("{dest}/{name}"))?;
    }
    Ok(())
}

/// The shared libraries that `objects` load, as `ldd` resolves them (the dynamic loader included).
/// An object of another architecture, or a library this machine lacks, is left out: the first
/// is never loaded here, and the second only by parts of Java that DynamoDB Local does not use.
fn shared_libraries(objects: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut found = std::collections::BTreeSet::new();
    for chunk in objects.chunks(64) {
        let output = Command::new("ldd").args(chunk).output().map_err(|e| format!("cannot run ldd: {e}"))?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let line = line.trim();
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
            // A line without a load address names the object that the following lines are of.
            let path = line.split_once("=> ").map_or(line, |(_, p)| p);
            if let Some((path, _)) = path.split_once(" (0x").filter(|(p, _)| p.starts_with('/')) {
                found.insert(PathBuf::from(path));
            }
        }
    }
    if found.is_empty() {
        return Err("ldd found no shared library of java".to_owned());
    }
    Ok(found.into_iter().collect())
}
