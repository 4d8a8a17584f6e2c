//! `sunfleet user`: add users, set passwords, list a company's users. Works while a server
//! runs on the same data folder (the registry is shared safely).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sunfleet_engine::registry::{NewUser, Registry, UserRole, insert_user};

use crate::data::{DEFAULT_DATA_DIR, registry_path};

#[derive(Debug, Args)]
pub struct UserArgs {
    /// Data folder.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    data: PathBuf,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a company member (installer_admin, installer_user, subcontractor or analyst) or
    /// a platform administrator (platform_admin: every company's systems, no company).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        /// The company's id (`sunfleet sql "SELECT id, name FROM companies"`); not for
        /// platform_admin.
        #[arg(long)]
        company: Option<i64>,
        #[arg(long, default_value = "")]
        given_name: String,
        #[arg(long, default_value = "")]
        family_name: String,
        /// `en` or `fr`.
        #[arg(long, default_value = "en")]
        language: String,
    },
    /// Set a user's password, read from the first line of standard input.
    Password {
        #[arg(long)]
        email: String,
    },
    /// A company's users.
    List {
        #[arg(long)]
        company: i64,
    },
}

pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::open(registry_path(&args.data))
        .with_context(|| format!("opening the registry in {}", args.data.display()))?;
    match args.command {
        UserCommand::Add {
            email,
            role,
            company,
            given_name,
            family_name,
            language,
        } => {
            let role = match UserRole::parse(&role) {
                Some(UserRole::Owner) => {
                    bail!("owners are added with their system (activation), not here")
                }
                Some(role) => role,
                None => bail!(
                    "unknown role {role:?}: installer_admin, installer_user, subcontractor, analyst or platform_admin"
                ),
            };
            if !email.contains('@') {
                bail!("{email:?} is not an e-mail address");
            }
            match (role, company) {
                (UserRole::PlatformAdmin, Some(_)) => {
                    bail!("a platform administrator belongs to no company: leave out --company")
                }
                (UserRole::PlatformAdmin, None) => {}
                (_, None) => bail!("--company is required for a {}", role.as_str()),
                (_, Some(company)) => {
                    if registry.company_name(company)?.is_none() {
                        bail!("no company has the id {company}");
                    }
                }
            }
            let id = registry.transaction("adding a user", |tx| {
                insert_user(
                    tx,
                    &NewUser {
                        email: email.clone(),
                        given_name,
                        family_name,
                        phone: String::new(),
                        language,
                        role: role.as_str(),
                        company_id: company,
                        owner_id: None,
                        password_hash: None,
                        created_us: sunfleet_engine::time::now_micros(),
                    },
                )
            })?;
            let company = company
                .map(|c| format!(" in company {c}"))
                .unwrap_or_default();
            println!(
                "user {id} added: {email} ({}){company}; set a password with `sunfleet user password --email {email}`",
                role.as_str()
            );
        }
        UserCommand::Password { email } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            registry.set_password(&email, password)?;
            println!("password set for {email}");
        }
        UserCommand::List { company } => {
            let users = registry.users_of_company(company)?;
            println!("id\temail\trole\tactive");
            for user in users {
                println!(
                    "{}\t{}\t{}\t{}",
                    user.id,
                    user.email,
                    user.role.as_str(),
                    if user.active { "yes" } else { "no" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
