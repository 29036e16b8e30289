//! The command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use certgate_core::{Clock, Name, RevocationReason, Serial, SystemClock};
use certgate_signer::{CaInitOptions, IssuerFiles, KeyType, Passphrase};
use certgate_store::CertificateRecord;
use clap::{Args, Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;

use crate::admin::{Inventory, ListRequest};
use crate::config::{CheckedConfig, Config, LogFormat};

/// certgate: a certificate-enrollment gateway with its own CA.
#[derive(Debug, Parser)]
#[command(name = "certgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (embedded defaults when no --config is given).
    Serve(Common),
    /// Manage certificate authorities.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Inspect and revoke issued certificates (through the running daemon if there is one).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// ACME administration.
    #[command(subcommand)]
    Acme(AcmeCommand),
    /// EST administration.
    #[command(subcommand)]
    Est(EstCommand),
    /// SCEP administration.
    #[command(subcommand)]
    Scep(ScepCommand),
    /// Enrollment requests waiting for an operator (EST and SCEP endpoints with require_approval).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Admin API access (bearer tokens for `/admin/v1/` on the HTTPS listener).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Connect to the configured TLS endpoints (and opted-in certificates' names) and report
    /// which serve the current certificate and which a superseded, revoked, expiring or
    /// unknown one.
    VerifyDeployment {
        #[command(flatten)]
        common: Common,
        /// Check only these `host:port` addresses instead of the configured targets.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Admin API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        #[command(flatten)]
        common: Common,
        /// What to call it.
        #[arg(long)]
        name: String,
        /// `admin` or `read-only`.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Lifetime, e.g. `90d`, `12h` (none: no expiry).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove a token by id.
    Remove {
        #[command(flatten)]
        common: Common,
        /// The token's id (the 16 hex digits after `cgt_`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the audit log as JSON lines.
    Export {
        #[command(flatten)]
        common: Common,
        /// Start after this entry number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Check the hash chain: of an exported file, or of the store (through the daemon if
    /// one runs). Exits non-zero naming the first entry that was altered, removed or moved.
    Verify {
        #[command(flatten)]
        common: Common,
        /// A JSON-lines export to check instead of the store.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ScepCommand {
    /// One-time challenge passwords.
    #[command(subcommand)]
    Challenge(ScepChallengeCommand),
}

#[derive(Debug, Subcommand)]
enum ScepChallengeCommand {
    /// Create a single-use challenge and print it once.
    Create {
        #[command(flatten)]
        common: Common,
        /// The SCEP endpoint.
        #[arg(long)]
        endpoint: String,
        /// Only a CSR with this subject (RFC 4514, e.g. `CN=dev1,O=test`, or the bare CN) may use it.
        #[arg(long = "for")]
        subject: Option<String>,
        /// Lifetime: seconds, or with a unit (`30m`, `8h`, `7d`).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        /// Print JSON ({"challenge": ..., "id": ..., "expires_at": ...}).
        #[arg(long)]
        json: bool,
    },
    /// List unused challenges (ids, never the challenges).
    List {
        #[command(flatten)]
        common: Common,
        /// Only this endpoint's.
        #[arg(long)]
        endpoint: Option<String>,
    },
}

/// Seconds from `90`, `90s`, `30m`, `8h` or `7d`.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 90, 30m, 8h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("{text:?} is too long"))
}

#[derive(Debug, Subcommand)]
enum EstCommand {
    /// HTTP Basic users of EST endpoints.
    #[command(subcommand)]
    User(EstUserCommand),
}

#[derive(Debug, Subcommand)]
enum EstUserCommand {
    /// Add a user; the password is read from the first line of standard input.
    Add {
        #[command(flatten)]
        common: Common,
        /// The EST endpoint.
        #[arg(long)]
        endpoint: String,
        /// The user name.
        username: String,
    },
    /// Remove a user.
    Remove {
        #[command(flatten)]
        common: Common,
        /// The EST endpoint.
        #[arg(long)]
        endpoint: String,
        /// The user name.
        username: String,
    },
    /// List users (names only).
    List {
        #[command(flatten)]
        common: Common,
        /// Only this endpoint's.
        #[arg(long)]
        endpoint: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// List pending requests (all with --all).
    List {
        #[command(flatten)]
        common: Common,
        /// Include approved, denied and issued ones.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Approve a request: the client's next poll gets its certificate.
    Approve {
        #[command(flatten)]
        common: Common,
        /// The request id, as listed (`est:<endpoint>:<fingerprint>`).
        id: String,
    },
    /// Deny a request: the client's next poll is refused.
    Deny {
        #[command(flatten)]
        common: Common,
        /// The request id, as listed.
        id: String,
        /// Why (kept for operators).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AcmeCommand {
    /// External account binding keys (RFC 8555 7.3.4).
    #[command(subcommand)]
    Eab(EabCommand),
}

#[derive(Debug, Subcommand)]
enum EabCommand {
    /// Create a single-use EAB key for an ACME endpoint and print its id and MAC key once.
    Create {
        #[command(flatten)]
        common: Common,
        /// The ACME endpoint the key is for.
        #[arg(long)]
        endpoint: String,
        /// Print JSON ({"key_id": ..., "hmac_key": ...}) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List EAB keys (ids, endpoints, and the account each bound; never the MAC keys).
    List {
        #[command(flatten)]
        common: Common,
    },
}

/// Where to find the configuration and data.
#[derive(Debug, Args, Clone)]
struct Common {
    /// Configuration file (TOML); the embedded defaults when omitted.
    #[arg(long, env = "CERTGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory; overrides the configuration's `data_dir`.
    #[arg(long, env = "CERTGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl Common {
    fn load(&self) -> anyhow::Result<(CheckedConfig, PathBuf)> {
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let checked = config.check()?;
        let data_dir = self.data_dir.clone().unwrap_or_else(|| checked.config.data_dir.clone());
        Ok((checked, data_dir))
    }
}

#[derive(Debug, Args, Clone, Default)]
struct PassphraseArgs {
    /// Read the key passphrase from the first line of this file.
    #[arg(long, conflicts_with = "passphrase_env")]
    passphrase_file: Option<PathBuf>,
    /// Read the key passphrase from this environment variable.
    #[arg(long)]
    passphrase_env: Option<String>,
}

impl PassphraseArgs {
    fn read(&self) -> anyhow::Result<Option<Passphrase>> {
        Ok(match (&self.passphrase_file, &self.passphrase_env) {
            (Some(file), _) => Some(Passphrase::from_file(file)?),
            (None, Some(var)) => Some(Passphrase::from_env(var)?),
            (None, None) => None,
        })
    }
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a root and an intermediate (issuing) CA.
    Init {
        #[command(flatten)]
        common: Common,
        /// Issuer name.
        #[arg(long, default_value = "default")]
        name: String,
        /// Key type for both certificates.
        #[arg(long, default_value = "p256", value_parser = parse_key_type)]
        key_type: KeyType,
        /// Common name stem ("<stem> Root CA", "<stem> Issuing CA").
        #[arg(long, default_value = "certgate")]
        common_name: String,
        /// Organization.
        #[arg(long)]
        organization: Option<String>,
        /// Root validity in days.
        #[arg(long, default_value_t = 3650)]
        root_days: u32,
        /// Intermediate validity in days.
        #[arg(long, default_value_t = 1825)]
        intermediate_days: u32,
        /// Encrypt the keys with a passphrase.
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Import an existing CA: its certificate, key and chain up to the root.
    Import {
        #[command(flatten)]
        common: Common,
        /// Issuer name.
        #[arg(long)]
        name: String,
        /// The issuing CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM: PKCS#8, encrypted PKCS#8, SEC1 or PKCS#1).
        #[arg(long)]
        key: PathBuf,
        /// Certificates above it, up to and including the root (PEM).
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Passphrase of the key being imported, from a file.
        #[arg(long)]
        key_passphrase_file: Option<PathBuf>,
        /// Passphrase of the key being imported, from an environment variable.
        #[arg(long)]
        key_passphrase_env: Option<String>,
        /// Encrypt the stored copy with this passphrase.
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print an issuer's root certificate (PEM).
    Root {
        #[command(flatten)]
        common: Common,
        /// Issuer name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List the issuers in the data directory.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// List certificates, soonest expiry first.
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this cursor (printed as `next:` by the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Export every matching certificate as CSV or JSON.
    Export {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// `csv` or `json`.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Show one certificate (serial in hex, as `openssl x509 -serial` prints it).
    Show {
        #[command(flatten)]
        common: Common,
        /// Serial number (hex).
        serial: String,
        /// Print the certificate as PEM instead of its details.
        #[arg(long)]
        pem: bool,
    },
    /// Revoke a certificate.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// Serial number (hex).
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

/// Inventory filters (all optional, combined with AND).
#[derive(Debug, Args, Clone, Default)]
struct FilterArgs {
    /// Only those expiring within this many days.
    #[arg(long)]
    expiring_within: Option<u32>,
    /// Only this requester's (e.g. `acme-account:default/…`, `est-user:default/alice`).
    #[arg(long)]
    requester: Option<String>,
    /// Only those naming this DNS name or IP address.
    #[arg(long)]
    name: Option<String>,
    /// Only those from this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only those from this protocol (acme, est, scep).
    #[arg(long)]
    protocol: Option<String>,
    /// Only those whose `owner` label is this.
    #[arg(long)]
    owner: Option<String>,
    /// Only those with this label, `key=value`.
    #[arg(long)]
    label: Option<String>,
    /// Only those with this status (valid, renewal_due, superseded, expired, revoked).
    #[arg(long)]
    status: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<crate::inventory::InventoryFilter> {
        let mut pairs = std::collections::HashMap::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                pairs.insert(key.to_owned(), value.clone());
            }
        };
        put("expiring_within_days", &self.expiring_within.map(|d| d.to_string()));
        put("requester", &self.requester);
        put("name", &self.name);
        put("endpoint", &self.endpoint);
        put("protocol", &self.protocol);
        put("owner", &self.owner);
        put("label", &self.label);
        put("status", &self.status);
        Ok(crate::inventory::InventoryFilter::from_pairs(&pairs)?)
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file and report the first problem.
    Check {
        /// The file.
        file: PathBuf,
    },
}

fn parse_key_type(s: &str) -> Result<KeyType, String> {
    s.parse()
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Parses the command line, runs the command, and turns errors into a message and exit code 1.
#[allow(clippy::print_stderr)] // the CLI's own error output
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let (checked, data_dir) = common.load()?;
            init_logging(checked.config.log.format, &checked.config.log.level);
            crate::serve::run(checked, data_dir).await
        }
        Command::Ca(command) => {
            init_logging(LogFormat::Text, "warn");
            ca(command)
        }
        Command::Cert(command) => {
            init_logging(LogFormat::Text, "warn");
            cert(command).await
        }
        Command::Acme(AcmeCommand::Eab(command)) => {
            init_logging(LogFormat::Text, "warn");
            eab(command).await
        }
        Command::Est(EstCommand::User(command)) => {
            init_logging(LogFormat::Text, "warn");
            est_user(command).await
        }
        Command::Scep(ScepCommand::Challenge(command)) => {
            init_logging(LogFormat::Text, "warn");
            scep_challenge(command).await
        }
        Command::Approvals(command) => {
            init_logging(LogFormat::Text, "warn");
            approvals(command).await
        }
        Command::Admin(AdminCommand::Token(command)) => {
            init_logging(LogFormat::Text, "warn");
            token(command).await
        }
        Command::Audit(command) => {
            init_logging(LogFormat::Text, "warn");
            audit(command).await
        }
        Command::VerifyDeployment {
            common,
            targets,
            format,
        } => {
            init_logging(LogFormat::Text, "warn");
            verify_deployment(common, targets, format).await
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let checked = Config::load(&file)?.check()?;
            say(&format!(
                "{}: ok ({} issuer(s), {} profile(s), {} endpoint(s))",
                file.display(),
                checked.config.issuers.len(),
                checked.profiles.len(),
                checked.endpoints.len()
            ));
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)] // the CLI's own output
fn say(line: &str) {
    println!("{line}");
}

fn issuer_dir(checked: &CheckedConfig, data_dir: &Path, name: &str) -> PathBuf {
    checked
        .config
        .issuers
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.dir_in(data_dir))
        .unwrap_or_else(|| data_dir.join("ca").join(name))
}

/// Where a new issuer goes: the configured directory for that name, else `ca/<name>`.
fn new_issuer_dir(common: &Common, name: String) -> anyhow::Result<(Name, PathBuf)> {
    let (checked, data_dir) = common.load()?;
    let name = Name::new(name)?;
    crate::wiring::prepare_data_dir(&data_dir)?;
    let dir = issuer_dir(&checked, &data_dir, name.as_str());
    Ok((name, dir))
}

fn ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init {
            common,
            name,
            key_type,
            common_name,
            organization,
            root_days,
            intermediate_days,
            passphrase,
        } => {
            let (name, dir) = new_issuer_dir(&common, name)?;
            let options = CaInitOptions {
                key_type,
                common_name,
                organization,
                root_validity: time::Duration::days(root_days.into()),
                intermediate_validity: time::Duration::days(intermediate_days.into()),
                passphrase: passphrase.read()?,
            };
            let files = certgate_signer::init_ca(&dir, &options, SystemClock.now())?;
            say(&format!("created issuer {name} ({key_type})"));
            say(&format!("root certificate: {}", files.root.display()));
            say(&format!("issuing certificate: {}", files.cert.display()));
            Ok(())
        }
        CaCommand::Import {
            common,
            name,
            cert,
            key,
            chain,
            key_passphrase_file,
            key_passphrase_env,
            passphrase,
        } => {
            let (name, dir) = new_issuer_dir(&common, name)?;
            let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let chain = chain.as_deref().map(read).transpose()?;
            let key_passphrase = PassphraseArgs {
                passphrase_file: key_passphrase_file,
                passphrase_env: key_passphrase_env,
            }
            .read()?;
            let files = certgate_signer::import_ca(
                &dir,
                &read(&cert)?,
                &read(&key)?,
                chain.as_deref(),
                key_passphrase.as_ref(),
                passphrase.read()?.as_ref(),
            )?;
            say(&format!("imported issuer {name} into {}", files.dir.display()));
            Ok(())
        }
        CaCommand::Root { common, name } => {
            let (checked, data_dir) = common.load()?;
            let files = IssuerFiles::in_dir(&issuer_dir(&checked, &data_dir, &name));
            let pem = std::fs::read_to_string(&files.root)
                .with_context(|| format!("no root for issuer {name} at {}", files.root.display()))?;
            print_raw(&pem);
            Ok(())
        }
        CaCommand::List { common } => {
            let (_, data_dir) = common.load()?;
            let ca_dir = data_dir.join("ca");
            let mut entries: Vec<_> = std::fs::read_dir(&ca_dir)
                .with_context(|| format!("no CAs in {}", ca_dir.display()))?
                .filter_map(Result::ok)
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let files = IssuerFiles::in_dir(&entry.path());
                if !files.exists() {
                    continue;
                }
                let pem = std::fs::read(&files.cert)?;
                let der = certgate_signer::certificates_from_pem(&pem)?
                    .into_iter()
                    .next()
                    .context("empty issuer.pem")?;
                let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
                say(&format!(
                    "{}\t{}\tvalid until {}",
                    entry.file_name().to_string_lossy(),
                    cert.subject(),
                    cert.validity().not_after
                ));
            }
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_raw(text: &str) {
    print!("{text}");
}

fn status(record: &CertificateRecord, now: OffsetDateTime) -> &'static str {
    if record.revocation.is_some() {
        "revoked"
    } else if record.not_after <= now {
        "expired"
    } else {
        "valid"
    }
}

async fn cert(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::List {
            common,
            filter,
            limit,
            after,
            format,
        } => {
            let (checked, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let request = ListRequest {
                filter: filter.to_filter()?,
                limit,
                after,
            };
            let page = inventory
                .list(&request, checked.config.lifecycle.renewal_fraction())
                .await?;
            inventory.close().await?;
            match format {
                OutputFormat::Json => say(&serde_json::to_string_pretty(&page.items)?),
                OutputFormat::Text => {
                    say("SERIAL\tNOT_AFTER\tSTATUS\tPROTOCOL/ENDPOINT\tREQUESTER\tNAMES");
                    for r in &page.items {
                        let names: Vec<String> = r.identifiers.iter().map(ToString::to_string).collect();
                        say(&format!(
                            "{}\t{}\t{}\t{}/{}\t{}\t{}",
                            r.serial,
                            r.not_after.date(),
                            r.status.as_str(),
                            r.protocol,
                            r.endpoint,
                            r.requester,
                            if names.is_empty() {
                                r.subject.clone()
                            } else {
                                names.join(",")
                            }
                        ));
                    }
                    if let Some(next) = &page.next {
                        say(&format!("next: {next}"));
                    }
                }
            }
            Ok(())
        }
        CertCommand::Export { common, filter, format } => {
            let csv = match format.as_str() {
                "csv" => true,
                "json" => false,
                other => bail!("unknown format {other:?} (csv, json)"),
            };
            let (checked, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let text = inventory
                .export(&filter.to_filter()?, csv, checked.config.lifecycle.renewal_fraction())
                .await?;
            inventory.close().await?;
            print_raw(&text);
            Ok(())
        }
        CertCommand::Show { common, serial, pem } => {
            let (_, data_dir) = common.load()?;
            let serial = Serial::parse_hex(&serial)?;
            let inventory = Inventory::open(&data_dir).await?;
            let record = inventory.show(&serial).await?;
            inventory.close().await?;
            if pem {
                print_raw(&certgate_signer::certificates_to_pem([record.der.as_slice()]));
            } else {
                let mut value = serde_json::to_value(&record)?;
                if let Some(object) = value.as_object_mut() {
                    object.remove("der");
                    object.insert("status".into(), status(&record, OffsetDateTime::now_utc()).into());
                }
                say(&serde_json::to_string_pretty(&value)?);
            }
            Ok(())
        }
        CertCommand::Revoke { common, serial, reason } => {
            let (_, data_dir) = common.load()?;
            let serial = Serial::parse_hex(&serial)?;
            let Ok(reason) = reason.parse::<RevocationReason>() else {
                bail!("unknown revocation reason {reason:?}");
            };
            let inventory = Inventory::open(&data_dir).await?;
            let via = if inventory.via_daemon() {
                "through the running daemon"
            } else {
                "in the store"
            };
            let record = inventory.revoke(&serial, reason).await?;
            inventory.close().await?;
            say(&format!("revoked {} ({reason}) {via}", record.serial));
            Ok(())
        }
    }
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            common,
            name,
            role,
            ttl,
        } => {
            let role = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let created = inventory
                .create_token(&crate::admin::TokenCreateBody {
                    name,
                    role,
                    ttl_seconds: ttl,
                })
                .await?;
            inventory.close().await?;
            say(&created.token);
            Ok(())
        }
        TokenCommand::List { common } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let tokens = inventory.list_tokens().await?;
            inventory.close().await?;
            say("ID\tNAME\tROLE\tCREATED\tEXPIRES");
            for t in tokens {
                say(&format!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.created_at,
                    t.expires_at.as_deref().unwrap_or("never")
                ));
            }
            Ok(())
        }
        TokenCommand::Remove { common, id } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            inventory.remove_token(&id).await?;
            inventory.close().await?;
            say(&format!("removed admin token {id}"));
            Ok(())
        }
    }
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    /// Entries asked for per call (the store answers at most its own page size, 1000).
    const PAGE: usize = 1000;
    /// Hands every line of the log after `after` to `each`, a page at a time (the log may be
    /// far larger than memory).
    async fn each_line(
        common: &Common,
        after: u64,
        mut each: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (_, data_dir) = common.load()?;
        let inventory = Inventory::open(&data_dir).await?;
        let mut after = after;
        loop {
            let page = inventory.audit_lines(after, PAGE).await?;
            // Only an empty page ends the log: a page may be shorter than asked for (at the
            // end of an archive segment).
            let Some(last) = page.lines().last() else {
                break;
            };
            let entry: certgate_store::audit::AuditEntry = serde_json::from_str(last)?;
            after = entry.seq;
            page.lines().try_for_each(&mut each)?;
        }
        inventory.close().await?;
        Ok(())
    }
    match command {
        AuditCommand::Export { common, after } => {
            let mut out = std::io::stdout().lock();
            each_line(&common, after, |line| Ok(writeln!(out, "{line}")?)).await?;
            out.flush()?;
            Ok(())
        }
        AuditCommand::Verify { common, file } => {
            let verified = match file {
                Some(file) => {
                    let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
                    certgate_store::audit::verify_jsonl(reader)
                }
                None => {
                    let mut verifier = certgate_store::audit::JsonlVerifier::default();
                    // The first break ends the walk; any other error is not a verdict.
                    match each_line(&common, 0, |line| Ok(verifier.push_line(line)?)).await {
                        Ok(()) => verifier.finish(),
                        Err(e) => Err(e.downcast::<certgate_store::audit::AuditError>()?),
                    }
                }
            };
            match verified {
                Ok(summary) => {
                    say(&format!(
                        "audit log ok: {} entries, chain intact, last hash {}",
                        summary.entries, summary.last_hash
                    ));
                    Ok(())
                }
                Err(e) => bail!("audit log broken: {e}"),
            }
        }
    }
}

/// `certgate verify-deployment`: through the running daemon (which records the findings and
/// alerts), or standalone from the store (findings recorded, no alerts sent).
async fn verify_deployment(common: Common, targets: Vec<String>, format: OutputFormat) -> anyhow::Result<()> {
    let (checked, data_dir) = common.load()?;
    let reports: serde_json::Value = match crate::admin::AdminClient::connect(&data_dir).await {
        Some(client) => {
            let body = serde_json::to_vec(&crate::admin::VerifyBody { targets })?;
            client
                .call_json(hyper::Method::POST, "/v1/deployments/verify", Some(body))
                .await?
        }
        None => {
            let store = crate::wiring::open_store(&data_dir)?;
            let clock: std::sync::Arc<dyn certgate_core::Clock> = std::sync::Arc::new(certgate_core::SystemClock);
            let lifecycle = &checked.config.lifecycle;
            let verifier = certgate_lifecycle::DeploymentVerifier::new(
                certgate_lifecycle::LifecycleDeps {
                    certificates: std::sync::Arc::new(store.clone()),
                    notifications: std::sync::Arc::new(store.clone()),
                    clock,
                },
                crate::wiring::deployment_settings(&lifecycle.deployment, &targets)?,
                crate::wiring::monitor_settings(lifecycle),
                None,
            )?;
            let reports = verifier.run_once().await?;
            certgate_store::CertificateStore::flush(&store).await?;
            serde_json::to_value(&reports)?
        }
    };
    match format {
        OutputFormat::Json => say(&serde_json::to_string_pretty(&reports)?),
        OutputFormat::Text => {
            say("TARGET\tSTATE\tSERIAL\tNOT_AFTER");
            for report in reports.as_array().into_iter().flatten() {
                let observation = &report["observation"];
                let field = |v: &serde_json::Value| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| if v.is_null() { "-".to_owned() } else { v.to_string() })
                };
                say(&format!(
                    "{}\t{}\t{}\t{}",
                    field(&observation["target"]),
                    field(&observation["state"]),
                    field(&observation["serial"]),
                    field(&observation["not_after"]),
                ));
            }
        }
    }
    Ok(())
}

async fn eab(command: EabCommand) -> anyhow::Result<()> {
    match command {
        EabCommand::Create { common, endpoint, json } => {
            let (checked, data_dir) = common.load()?;
            let acme_endpoints: Vec<Name> = checked
                .endpoints
                .iter()
                .filter(|e| e.protocol == certgate_core::Protocol::Acme)
                .map(|e| e.name.clone())
                .collect();
            let inventory = Inventory::open(&data_dir).await?;
            let key = inventory.create_eab_key(&endpoint, &acme_endpoints).await?;
            inventory.close().await?;
            if json {
                say(&serde_json::to_string(&key)?);
            } else {
                say(&format!("key id:   {}", key.key_id));
                say(&format!("MAC key:  {}", key.hmac_key));
                say("(shown once; the key binds one account, e.g. certbot --eab-kid ID --eab-hmac-key KEY)");
            }
            Ok(())
        }
        EabCommand::List { common } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let keys = inventory.list_eab_keys().await?;
            inventory.close().await?;
            for key in keys {
                say(&format!(
                    "{}  endpoint={}  created={}  {}",
                    key.key_id,
                    key.endpoint,
                    key.created_at,
                    key.account
                        .map_or("unused".to_owned(), |a| format!("bound to account {a}"))
                ));
            }
            Ok(())
        }
    }
}

/// The password from the first line of standard input (without its line ending).
fn read_password() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if password.is_empty() {
        bail!("no password on standard input (e.g. `echo \"$PASSWORD\" | certgate est user add …`)");
    }
    Ok(password)
}

async fn est_user(command: EstUserCommand) -> anyhow::Result<()> {
    match command {
        EstUserCommand::Add {
            common,
            endpoint,
            username,
        } => {
            let (checked, data_dir) = common.load()?;
            let password = read_password()?;
            let est_endpoints: Vec<Name> = checked.est.iter().map(|e| e.name.clone()).collect();
            let inventory = Inventory::open(&data_dir).await?;
            let request = crate::admin::EstUserCreateBody {
                endpoint: endpoint.clone(),
                username: username.clone(),
                password: password.to_string(),
            };
            let added = inventory.add_est_user(&request, &est_endpoints).await;
            drop(zeroize::Zeroizing::new(request.password));
            inventory.close().await?;
            added?;
            say(&format!("added user {username} to EST endpoint {endpoint}"));
            Ok(())
        }
        EstUserCommand::Remove {
            common,
            endpoint,
            username,
        } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let removed = inventory.remove_est_user(&endpoint, &username).await;
            inventory.close().await?;
            removed?;
            say(&format!("removed user {username} from EST endpoint {endpoint}"));
            Ok(())
        }
        EstUserCommand::List { common, endpoint } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let users = inventory.list_est_users(endpoint.as_deref()).await;
            inventory.close().await?;
            for user in users? {
                say(&format!(
                    "{}  endpoint={}  created={}",
                    user.username, user.endpoint, user.created_at
                ));
            }
            Ok(())
        }
    }
}

async fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List { common, all, format } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let items = inventory.list_approvals(all).await;
            inventory.close().await?;
            let items = items?;
            match format {
                OutputFormat::Json => say(&serde_json::to_string_pretty(&items)?),
                OutputFormat::Text => {
                    for item in items {
                        say(&format!(
                            "{}  {}  requester={}  subject={:?}  names={}  key={}  created={}",
                            item.id,
                            item.state,
                            item.requester,
                            item.subject,
                            item.names.join(","),
                            item.key,
                            item.created_at
                        ));
                    }
                }
            }
            Ok(())
        }
        ApprovalsCommand::Approve { common, id } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let decided = inventory.decide_approval(&id, None).await;
            inventory.close().await?;
            let item = decided?;
            say(&format!("approved {} (requester {})", item.id, item.requester));
            Ok(())
        }
        ApprovalsCommand::Deny { common, id, reason } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let decided = inventory.decide_approval(&id, Some(reason)).await;
            inventory.close().await?;
            let item = decided?;
            say(&format!("denied {} (requester {})", item.id, item.requester));
            Ok(())
        }
    }
}

async fn scep_challenge(command: ScepChallengeCommand) -> anyhow::Result<()> {
    match command {
        ScepChallengeCommand::Create {
            common,
            endpoint,
            subject,
            ttl,
            json,
        } => {
            let (checked, data_dir) = common.load()?;
            let scep_endpoints: Vec<Name> = checked.scep.iter().map(|e| e.name.clone()).collect();
            let inventory = Inventory::open(&data_dir).await?;
            let request = crate::admin::ScepChallengeCreateBody {
                endpoint,
                subject,
                ttl_seconds: ttl,
            };
            let created = inventory.create_scep_challenge(&request, &scep_endpoints).await;
            inventory.close().await?;
            let created = created?;
            if json {
                say(&serde_json::to_string(&created)?);
            } else {
                say(&format!("challenge:  {}", created.challenge));
                say(&format!("id:         {}", created.id));
                say(&format!("expires at: {}", created.expires_at));
                say("(shown once; single use, e.g. scepclient -challenge CHALLENGE)");
            }
            Ok(())
        }
        ScepChallengeCommand::List { common, endpoint } => {
            let (_, data_dir) = common.load()?;
            let inventory = Inventory::open(&data_dir).await?;
            let list = inventory.list_scep_challenges(endpoint.as_deref()).await;
            inventory.close().await?;
            for item in list? {
                say(&format!(
                    "{}  endpoint={}  for={}  expires={}",
                    item.id,
                    item.endpoint,
                    item.subject.as_deref().unwrap_or("-"),
                    item.expires_at
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttl_cases() {
        let cases = [
            ("bare_seconds", "90", Some(90)),
            ("seconds", "90s", Some(90)),
            ("minutes", "30m", Some(1800)),
            ("hours", "8h", Some(28_800)),
            ("days", "7d", Some(604_800)),
            ("unknown_unit", "3w", None),
            ("no_number", "h", None),
            ("overflow", "99999999999999999999d", None),
        ];
        for (case, text, want) in cases {
            assert_eq!(super::parse_ttl(text).ok(), want, "{case}");
        }
    }
}
