//! The interface in English and French (the seed guide's language), chosen per user
//! (Account page; `users.language`), or from the browser's `Accept-Language` before
//! sign-in. Texts are looked up by their English wording: a template writes
//! `{{ chrome.t("Systems") }}`; a wording without a French entry shows in English (a unit
//! test checks that every wording in the templates has one). Dates, numbers and units
//! follow the language's conventions.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    /// The registry's code (`en`, `fr`); anything else is English.
    pub fn from_code(code: &str) -> Self {
        if code.eq_ignore_ascii_case("fr") || code.to_ascii_lowercase().starts_with("fr-") {
            Lang::Fr
        } else {
            Lang::En
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// The language's own name.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
        }
    }

    /// The first of English or French in an `Accept-Language` header, by preference.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Lang::En;
        };
        let mut best = (Lang::En, -1.0f32);
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            let lang = if tag == "fr" || tag.starts_with("fr-") {
                Some(Lang::Fr)
            } else if tag == "en" || tag.starts_with("en-") {
                Some(Lang::En)
            } else {
                None
            };
            if let Some(lang) = lang
                && quality > best.1
            {
                best = (lang, quality);
            }
        }
        best.0
    }

    /// `text` in this language.
    pub fn t(self, text: &str) -> &str {
        match self {
            Lang::En => text,
            Lang::Fr => french().get(text).copied().unwrap_or(text),
        }
    }

    /// `template` in this language with each `{}` replaced by the next of `args`.
    pub fn fill(self, template: &str, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = String::new();
        let mut args = args.iter();
        let mut pieces = self.t(template).split("{}");
        if let Some(first) = pieces.next() {
            out.push_str(first);
        }
        for piece in pieces {
            if let Some(arg) = args.next() {
                out.push_str(&arg.to_string());
            }
            out.push_str(piece);
        }
        out
    }

    /// A number with `places` decimals, in this language's notation.
    pub fn decimal(self, value: f64, places: usize) -> String {
        let text = format!("{value:.places$}");
        match self {
            Lang::En => text,
            Lang::Fr => text.replace('.', ","),
        }
    }

    /// Energy in the largest unit that keeps it readable.
    pub fn energy(self, wh: f64) -> String {
        let abs = wh.abs();
        if abs >= 1e9 {
            format!("{} GWh", self.decimal(wh / 1e9, 2))
        } else if abs >= 1e6 {
            format!("{} MWh", self.decimal(wh / 1e6, 2))
        } else if abs >= 1e3 {
            format!("{} kWh", self.decimal(wh / 1e3, 1))
        } else {
            format!("{} Wh", self.decimal(wh, 0))
        }
    }

    /// A percentage with `places` decimals (a space before the sign, in both languages,
    /// as the portal always wrote it).
    pub fn percent(self, value: f64, places: usize) -> String {
        format!("{} %", self.decimal(value, places))
    }

    /// A UTC time: `2026-11-29 10:42 UTC` in English, `29/11/2026 10:42 UTC` in French.
    pub fn time(self, us: i64) -> String {
        let Ok(t) = jiff::Timestamp::from_microsecond(us) else {
            return String::new();
        };
        match self {
            Lang::En => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
            Lang::Fr => t.strftime("%d/%m/%Y %H:%M UTC").to_string(),
        }
    }

    /// A time in a site's time zone: `2026-11-29 14:05` / `29/11/2026 14:05`.
    pub fn local_time(self, us: i64, zone: &jiff::tz::TimeZone) -> String {
        let Ok(t) = jiff::Timestamp::from_microsecond(us) else {
            return String::new();
        };
        let local = zone.to_datetime(t);
        match self {
            Lang::En => local.strftime("%Y-%m-%d %H:%M").to_string(),
            Lang::Fr => local.strftime("%d/%m/%Y %H:%M").to_string(),
        }
    }

    /// A civil date (`YYYY-MM-DD`): as is in English, `dd/mm/yyyy` in French.
    pub fn date(self, iso: &str) -> String {
        match (self, iso.parse::<jiff::civil::Date>()) {
            (Lang::Fr, Ok(date)) => date.strftime("%d/%m/%Y").to_string(),
            _ => iso.to_owned(),
        }
    }

    /// A power in W or kW.
    pub fn power(self, watts: f64) -> String {
        if watts.abs() >= 1e3 {
            format!("{} kW", self.decimal(watts / 1e3, 2))
        } else {
            format!("{} W", self.decimal(watts, 0))
        }
    }

    /// A duration as the largest whole unit ("3 h", "2 d" / "2 j").
    pub fn age(self, us: i64) -> String {
        let minutes = us / 60_000_000;
        if minutes < 60 {
            format!("{minutes} min")
        } else if minutes < 48 * 60 {
            format!("{} h", minutes / 60)
        } else {
            let days = minutes / (24 * 60);
            match self {
                Lang::En => format!("{days} d"),
                Lang::Fr => format!("{days} j"),
            }
        }
    }
}

mod fr_devices;
mod fr_diagnostics;
mod fr_mail;
mod fr_replacements;
mod fr_returns;
mod fr_settings;
mod fr_system;

/// Every English → French table: the shell's and fleet pages' below, then one per group of
/// pages.
const FRENCH_TABLES: &[&[(&str, &str)]] = &[
    FRENCH,
    fr_system::FRENCH,
    fr_settings::FRENCH,
    fr_devices::FRENCH,
    fr_diagnostics::FRENCH,
    fr_mail::FRENCH,
    fr_replacements::FRENCH,
    fr_returns::FRENCH,
];

/// Whether `text` has a French entry (for the pages' own tests of the labels they compute).
#[cfg(test)]
pub(crate) fn has_french(text: &str) -> bool {
    french().contains_key(text)
}

fn french() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        FRENCH_TABLES
            .iter()
            .flat_map(|t| t.iter().copied())
            .collect()
    })
}

/// English wording → French.
pub const FRENCH: &[(&str, &str)] = &[
    ("Dashboard", "Tableau de bord"),
    ("Systems", "Systèmes"),
    ("Alerts", "Alertes"),
    ("Account", "Compte"),
    ("Services", "Services"),
    ("Data & Privacy", "Données et confidentialité"),
    ("Data & privacy", "Données et confidentialité"),
    ("Support", "Assistance"),
    ("Admin", "Administration"),
    ("Sign out", "Se déconnecter"),
    ("Main", "Principal"),
    ("Users", "Utilisateurs"),
    ("Installer administrator", "Administrateur installateur"),
    ("Installer", "Installateur"),
    ("Subcontractor", "Sous-traitant"),
    ("System owner", "Propriétaire du système"),
    ("Analyst", "Analyste"),
    ("Platform administrator", "Administrateur de la plateforme"),
    ("Analyst (SQL only)", "Analyste (SQL uniquement)"),
    ("Normal", "Normal"),
    ("Gateway not reporting", "Passerelle muette"),
    (
        "Production off by command",
        "Production désactivée par commande",
    ),
    (
        "Power production off by command",
        "Production d'énergie désactivée par commande",
    ),
    ("Microinverters not reporting", "Micro-onduleurs muets"),
    ("Production issue", "Problème de production"),
    ("Meter not reporting", "Compteur muet"),
    ("Meter issue", "Problème de compteur"),
    ("Battery not reporting", "Batterie muette"),
    ("Storage idle", "Stockage inactif"),
    ("Deactivated", "Désactivé"),
    ("Retired", "Retiré"),
    ("Not monitored", "Non surveillé"),
    ("Unknown", "Inconnu"),
    ("Started", "Démarré"),
    ("Connecting", "Connexion"),
    ("Verifying", "Vérification"),
    ("Ready", "Prêt"),
    ("Owner entered", "Propriétaire saisi"),
    ("Location entered", "Emplacement saisi"),
    ("Gateways entered", "Passerelles saisies"),
    ("Gateways reported", "Passerelles connectées"),
    (
        "Good communication established",
        "Bonne communication établie",
    ),
    (
        "System operation verified",
        "Fonctionnement du système vérifié",
    ),
    ("Arrays built", "Champs de modules construits"),
    ("System operational", "Système opérationnel"),
    ("Access granted to owner", "Accès accordé au propriétaire"),
    ("Unknown step", "Étape inconnue"),
    ("Jan", "janv."),
    ("Feb", "févr."),
    ("Mar", "mars"),
    ("Apr", "avr."),
    ("May", "mai"),
    ("Jun", "juin"),
    ("Jul", "juil."),
    ("Aug", "août"),
    ("Sep", "sept."),
    ("Oct", "oct."),
    ("Nov", "nov."),
    ("Dec", "déc."),
    ("Status", "État"),
    ("Issues", "Problèmes"),
    ("My company's reference", "Référence de ma société"),
    ("Street address", "Adresse"),
    ("City", "Ville"),
    ("State / region", "Région"),
    ("Country", "Pays"),
    ("Activation stage", "Étape d’activation"),
    ("Type", "Type"),
    ("Connection", "Connexion"),
    ("Energy today", "Énergie aujourd’hui"),
    ("Past 7 days", "7 derniers jours"),
    ("This month", "Ce mois-ci"),
    (
        "% of estimate (lifetime)",
        "% de l’estimation (depuis la mise en service)",
    ),
    ("Last report", "Dernier rapport"),
    ("residential", "résidentiel"),
    ("commercial", "commercial"),
    ("info", "info"),
    ("low", "faible"),
    ("medium", "moyenne"),
    ("high", "élevée"),
    ("new", "nouvelle"),
    ("in progress", "en cours"),
    ("resolved", "résolue"),
    ("AC Voltage Out Of Range", "Tension CA hors plage"),
    ("AC Frequency Out Of Range", "Fréquence CA hors plage"),
    ("GFI Tripped", "Disjoncteur différentiel déclenché"),
    (
        "DC Resistance Low - Power Off",
        "Résistance CC faible - arrêt",
    ),
    ("Grid Gone", "Réseau absent"),
    ("Grid Instability", "Instabilité du réseau"),
    (
        "AC Frequency Changing Too Fast",
        "Fréquence CA variant trop vite",
    ),
    ("Over Temperature", "Surchauffe"),
    ("Critical Temperature", "Température critique"),
    ("DC Voltage Too High", "Tension CC trop élevée"),
    ("DC Voltage Too Low", "Tension CC trop faible"),
    ("No Grid Profile", "Aucun profil réseau"),
    ("Power On Reset", "Réinitialisation à la mise sous tension"),
    ("Failed To Report", "Échec de communication"),
    (
        "Power Generation Off By Command",
        "Production arrêtée sur commande",
    ),
    ("sign in", "connexion"),
    ("sign out", "déconnexion"),
    ("password changed", "mot de passe modifié"),
    ("user deactivated", "utilisateur désactivé"),
    ("user reactivated", "utilisateur réactivé"),
    ("user invited", "utilisateur invité"),
    ("invitation accepted", "invitation acceptée"),
    ("subcontractor added", "sous-traitant ajouté"),
    ("system granted", "système accordé"),
    ("grant revoked", "accès révoqué"),
    ("system created", "système créé"),
    ("activation saved", "activation enregistrée"),
    ("devices reported", "appareils signalés"),
    ("api key created", "clé d’API créée"),
    ("api key revoked", "clé d’API révoquée"),
    ("never", "jamais"),
    ("until revoked", "jusqu’à révocation"),
    ("% complete", "% effectué"),
    ("(you)", "(vous)"),
    (
        "A different e-mail changes the system's owner.",
        "Une autre adresse e-mail change le propriétaire du système.",
    ),
    (
        "A key sees exactly what you see, per panel and at 5-minute resolution, with no monthly call quota; revoke it here at any time.",
        "Une clé voit exactement ce que vous voyez, panneau par panneau et au pas de 5 minutes, sans quota mensuel d’appels ; révoquez-la ici à tout moment.",
    ),
    ("API access", "Accès à l’API"),
    ("Access ends", "Fin de l’accès"),
    (
        "Access ends after (optional)",
        "Fin de l’accès après le (facultatif)",
    ),
    ("Action", "Action"),
    ("Activation checklist", "Liste de contrôle d’activation"),
    ("Activation form", "Formulaire d’activation"),
    ("Activations", "Activations"),
    ("Active", "Actif"),
    (
        "Add a subcontractor company",
        "Ajouter une société sous-traitante",
    ),
    ("Add company", "Ajouter la société"),
    ("Add new system", "Ajouter un système"),
    ("Alert", "Alerte"),
    ("Alert types", "Types d’alerte"),
    ("All", "Tous"),
    ("All types", "Tous les types"),
    (
        "An audit log of every change made by people (administrators read it on the Admin page).",
        "Un journal d’audit de chaque modification faite par une personne (les administrateurs le lisent sur la page Administration).",
    ),
    ("Annual degradation (%)", "Dégradation annuelle (%)"),
    ("Audit log", "Journal d’audit"),
    ("Authorised subcontractors", "Sous-traitants autorisés"),
    ("Change password", "Changer le mot de passe"),
    ("Change your password", "Changer votre mot de passe"),
    ("Choose the password for", "Choisissez le mot de passe de"),
    ("Columns", "Colonnes"),
    ("Commercial", "Commercial"),
    (
        "Companies that may see and work on the systems you grant them, until you revoke access or the end date passes.",
        "Les sociétés qui peuvent voir les systèmes que vous leur accordez et y intervenir, jusqu’à ce que vous révoquiez l’accès ou que la date de fin soit passée.",
    ),
    ("Company", "Société"),
    ("Company name", "Nom de la société"),
    (
        "Company performance scorecard",
        "Tableau de performance de la société",
    ),
    ("Company services", "Services de la société"),
    ("Company users", "Utilisateurs de la société"),
    ("Complete", "Avancement"),
    ("Completed", "Effectuée"),
    (
        "Contact e-mail (invited as its first user)",
        "E-mail du contact (invité comme premier utilisateur)",
    ),
    ("Contact family name", "Nom du contact"),
    ("Contact given name", "Prénom du contact"),
    ("Create key", "Créer la clé"),
    ("Create system", "Créer le système"),
    ("Created", "Créée"),
    ("Current password", "Mot de passe actuel"),
    ("Deactivate", "Désactiver"),
    ("Details", "Détails"),
    ("Devices and operation", "Appareils et mise en service"),
    ("Download CSV", "Télécharger en CSV"),
    ("E-mail", "E-mail"),
    (
        "Enter the system, its owner, its location and its gateway serial numbers. Once the gateway connects, the system moves through the stages by itself.",
        "Saisissez le système, son propriétaire, son emplacement et les numéros de série de ses passerelles. Dès que la passerelle se connecte, le système franchit les étapes de lui-même.",
    ),
    ("Estimate", "Estimation"),
    ("Family name", "Nom"),
    ("Figures", "Chiffres"),
    ("Fleet energy per day", "Énergie du parc par jour"),
    ("Fleet energy this month", "Énergie du parc ce mois-ci"),
    ("Fleet energy today", "Énergie du parc aujourd’hui"),
    (
        "Fleet energy, past 7 days",
        "Énergie du parc, 7 derniers jours",
    ),
    (
        "Fleet production, past 7 days",
        "Production du parc, 7 derniers jours",
    ),
    (
        "Fleet total produced today",
        "Total produit par le parc aujourd’hui",
    ),
    ("For", "Depuis"),
    ("Full list", "Liste complète"),
    (
        "Gateway serial numbers (one per line)",
        "Numéros de série des passerelles (un par ligne)",
    ),
    ("Given name", "Prénom"),
    ("Grant", "Accorder"),
    ("Grant access to systems", "Accorder l’accès à des systèmes"),
    ("Granted", "Accordé le"),
    ("In progress", "En cours"),
    (
        "Installer portal: sign in with your e-mail address.",
        "Portail installateur : connectez-vous avec votre adresse e-mail.",
    ),
    ("Installer reference", "Référence installateur"),
    (
        "Interface language, dates and numbers",
        "Langue de l’interface, des dates et des nombres",
    ),
    ("Invitation sent to", "Invitation envoyée à"),
    ("Invite", "Inviter"),
    ("Invite a user", "Inviter un utilisateur"),
    ("Key", "Clé"),
    ("Language", "Langue"),
    ("Last change", "Dernière modification"),
    ("Last sign-in", "Dernière connexion"),
    ("Last used", "Dernière utilisation"),
    ("Latitude", "Latitude"),
    ("Location", "Emplacement"),
    ("Longitude", "Longitude"),
    (
        "Mean time to resolve alerts (90 days)",
        "Délai moyen de résolution des alertes (90 jours)",
    ),
    ("Microinverters expected", "Micro-onduleurs attendus"),
    ("Month", "Mois"),
    ("Name", "Nom"),
    ("Name / ID", "Nom / ID"),
    ("New", "Nouvelles"),
    (
        "New key (copy it now, it is not shown again)",
        "Nouvelle clé (copiez-la maintenant, elle ne sera plus affichée)",
    ),
    ("New key's name", "Nom de la nouvelle clé"),
    ("New password", "Nouveau mot de passe"),
    ("New password again", "Nouveau mot de passe (confirmation)"),
    ("Next", "Suivante"),
    (
        "No estimate yet. Watching a month of production before setting one is advised.",
        "Pas encore d’estimation. Il est conseillé d’observer un mois de production avant d’en fixer une.",
    ),
    ("No key yet.", "Aucune clé pour l’instant."),
    ("No open alerts.", "Aucune alerte en cours."),
    ("No service request.", "Aucune demande de service."),
    (
        "No subcontractor yet.",
        "Aucun sous-traitant pour l’instant.",
    ),
    ("No system at this stage.", "Aucun système à cette étape."),
    ("No system granted.", "Aucun système accordé."),
    ("No system matches.", "Aucun système ne correspond."),
    ("Nothing yet.", "Rien pour l’instant."),
    ("On", "Sur"),
    ("OpenAPI description", "description OpenAPI"),
    ("Opened", "Ouverte"),
    ("Owner", "Propriétaire"),
    (
        "Owners' names, e-mail addresses and phone numbers, entered at activation; seen by the installer's users, by subcontractors while they are granted the system and by the platform administrator (all of whom may correct them: the owner is e-mailed every change), and by the owner.",
        "Les noms, adresses e-mail et numéros de téléphone des propriétaires, saisis à l’activation ; vus par les utilisateurs de l’installateur, par les sous-traitants tant que le système leur est accordé et par l’administrateur de la plateforme (qui peuvent tous les corriger : le propriétaire reçoit un e-mail à chaque modification), et par le propriétaire.",
    ),
    ("Pages", "Pages"),
    ("Password", "Mot de passe"),
    ("Password again", "Mot de passe (confirmation)"),
    (
        "Passwords only as argon2 hashes; sessions, invitation links and API keys only as digests.",
        "Les mots de passe uniquement sous forme d’empreintes argon2 ; les sessions, liens d’invitation et clés d’API uniquement sous forme de condensés.",
    ),
    ("Performance scorecard", "Tableau de performance"),
    (
        "Permission to operate (YYYY-MM-DD)",
        "Autorisation de mise en service (AAAA-MM-JJ)",
    ),
    ("Phone", "Téléphone"),
    (
        "Please correct the fields marked below; nothing was changed.",
        "Veuillez corriger les champs signalés ci-dessous ; rien n’a été modifié.",
    ),
    (
        "Please correct the fields marked below; nothing was saved.",
        "Veuillez corriger les champs signalés ci-dessous ; rien n’a été enregistré.",
    ),
    ("Postal code", "Code postal"),
    ("Previous", "Précédente"),
    ("Production estimate", "Estimation de production"),
    (
        "Production estimate (kWh per month)",
        "Estimation de production (kWh par mois)",
    ),
    ("Quick access", "Accès rapide"),
    ("Reactivate", "Réactiver"),
    (
        "Readings of every microinverter, meter and battery, and the events gateways send, for as long as the installation's retention allows; the systems' owners, installers and granted subcontractors see them.",
        "Les mesures de chaque micro-onduleur, compteur et batterie, et les événements envoyés par les passerelles, aussi longtemps que la durée de conservation de l’installation le permet ; les propriétaires des systèmes, leurs installateurs et les sous-traitants autorisés les voient.",
    ),
    ("Reason", "Motif"),
    ("Request", "Demande"),
    ("Residential", "Résidentiel"),
    ("Resolved", "Résolues"),
    ("Revoke", "Révoquer"),
    ("Role", "Rôle"),
    ("Save", "Enregistrer"),
    ("Save columns", "Enregistrer les colonnes"),
    ("Save language", "Enregistrer la langue"),
    ("Saved.", "Enregistré."),
    (
        "Scripts and home-automation tools use the JSON API",
        "Les scripts et outils domotiques utilisent l’API JSON",
    ),
    ("Search", "Rechercher"),
    ("Search by name or ID", "Rechercher par nom ou ID"),
    (
        "Search by name, ID or reference",
        "Rechercher par nom, ID ou référence",
    ),
    ("Search systems", "Rechercher des systèmes"),
    ("Service request details", "Détail des demandes de service"),
    ("Service requests", "Demandes de service"),
    (
        "Set password and sign in",
        "Définir le mot de passe et se connecter",
    ),
    ("Severity", "Gravité"),
    ("Sign in", "Se connecter"),
    ("Since", "Depuis le"),
    ("Stage", "Étape"),
    ("Stages", "Étapes"),
    ("State", "Région"),
    ("Step", "Étape"),
    ("System", "Système"),
    (
        "System IDs (separated by commas or spaces)",
        "ID des systèmes (séparés par des virgules ou des espaces)",
    ),
    ("Systems list", "Liste des systèmes"),
    ("Systems list as CSV", "Liste des systèmes en CSV"),
    (
        "The link sets their password and works for 7 days",
        "Le lien permet de définir le mot de passe et reste valable 7 jours",
    ),
    ("Third-party owned", "Propriété d’un tiers"),
    ("Time zone", "Fuseau horaire"),
    ("Total", "Total"),
    ("Users of", "Utilisateurs de"),
    ("Welcome to Sunfleet", "Bienvenue sur Sunfleet"),
    ("What Sunfleet keeps", "Ce que Sunfleet conserve"),
    (
        "What statuses and alerts mean",
        "Signification des états et des alertes",
    ),
    (
        "What the company's users did, newest first (the last 100 entries).",
        "Ce qu’ont fait les utilisateurs de la société, du plus récent au plus ancien (les 100 dernières entrées).",
    ),
    ("When", "Quand"),
    ("Who", "Qui"),
    ("With degradation", "Avec dégradation"),
    (
        "Your password was changed; your other sessions were signed out.",
        "Votre mot de passe a été modifié ; vos autres sessions ont été fermées.",
    ),
    ("and", "et"),
    ("characters or more", "caractères ou plus"),
    ("ended", "terminé le"),
    ("kWh per month;", "kWh par mois ;"),
    (
        "microinverter(s) registered. Gateways reporting, communication, operation and arrays are checked from the data the gateways send; the system is operational 24 hours after its permission-to-operate date without issues, and then its owner gets access.",
        "micro-onduleur(s) enregistré(s). La connexion des passerelles, la communication, le fonctionnement et les champs de modules sont vérifiés à partir des données envoyées par les passerelles ; le système est opérationnel 24 heures après sa date d’autorisation de mise en service sans problème, puis son propriétaire reçoit un accès.",
    ),
    ("of", "sur"),
    ("open alert(s) on", "alerte(s) en cours sur"),
    ("page", "page"),
    ("revoked", "révoquée le"),
    ("shown.", "affichés."),
    ("system(s).", "système(s)."),
    ("waiting", "en attente"),
    ("with a key in the header", "avec une clé dans l’en-tête"),
    ("← Activations", "← Activations"),
    ("Enter the system's name.", "Saisissez le nom du système."),
    (
        "Choose residential or commercial.",
        "Choisissez résidentiel ou commercial.",
    ),
    (
        "Enter the owner's e-mail address (name@example.com).",
        "Saisissez l’adresse e-mail du propriétaire (nom@exemple.fr).",
    ),
    (
        "Enter the owner's family name.",
        "Saisissez le nom du propriétaire.",
    ),
    (
        "Enter both coordinates, or neither.",
        "Saisissez les deux coordonnées, ou aucune.",
    ),
    (
        "At most 10 gateways per system.",
        "10 passerelles au plus par système.",
    ),
    (
        "A whole number from 1 to 10000.",
        "Un nombre entier de 1 à 10000.",
    ),
    ("A date as YYYY-MM-DD.", "Une date au format AAAA-MM-JJ."),
    ("A percentage from 0 to 5.", "Un pourcentage de 0 à 5."),
    (
        "Enter all twelve months, or none.",
        "Saisissez les douze mois, ou aucun.",
    ),
    (
        "Enter an e-mail address (name@example.com).",
        "Saisissez une adresse e-mail (nom@exemple.fr).",
    ),
    ("Enter the family name.", "Saisissez le nom."),
    (
        "Choose administrator, installer or analyst.",
        "Choisissez administrateur, installateur ou analyste.",
    ),
    (
        "Enter the company's name (at most 200 characters).",
        "Saisissez le nom de la société (200 caractères au plus).",
    ),
    ("Choose a subcontractor.", "Choisissez un sous-traitant."),
    (
        "Enter one or more system IDs.",
        "Saisissez un ou plusieurs ID de système.",
    ),
    (
        "Choose a day from today on.",
        "Choisissez un jour à partir d’aujourd’hui.",
    ),
    (
        "Choose one of your subcontractors.",
        "Choisissez l’un de vos sous-traitants.",
    ),
    (
        "Name the key (1 to 100 characters), e.g. after the script using it.",
        "Nommez la clé (1 à 100 caractères), par exemple d’après le script qui l’utilise.",
    ),
    (
        "The two passwords differ.",
        "Les deux mots de passe diffèrent.",
    ),
    (
        "The two new passwords differ.",
        "Les deux nouveaux mots de passe diffèrent.",
    ),
    (
        "This is not your current password.",
        "Ce n’est pas votre mot de passe actuel.",
    ),
    (
        "Enter your e-mail address and password.",
        "Saisissez votre adresse e-mail et votre mot de passe.",
    ),
    (
        "The e-mail address or the password is wrong, or the account is not active.",
        "L’adresse e-mail ou le mot de passe est erroné, ou le compte n’est pas actif.",
    ),
    ("At most {} characters.", "{} caractères au plus."),
    ("A number from -{} to {}.", "Un nombre de -{} à {}."),
    (
        "{} is not a time zone; use a name such as Europe/Paris.",
        "{} n’est pas un fuseau horaire ; utilisez un nom comme Europe/Paris.",
    ),
    ("{} is listed twice.", "{} figure deux fois."),
    (
        "{} is not a serial number (1 to 12 digits).",
        "{} n’est pas un numéro de série (1 à 12 chiffres).",
    ),
    ("{}: kWh from 0 to 10000000.", "{} : kWh de 0 à 10000000."),
    (
        "{} is already registered to a system.",
        "{} est déjà enregistré sur un système.",
    ),
    ("{} is not a system ID.", "{} n’est pas un ID de système."),
    (
        "Access granted to {} system(s).",
        "Accès accordé à {} système(s).",
    ),
    (
        "Your company has no system {}; nothing was granted.",
        "Votre société n’a pas de système {} ; rien n’a été accordé.",
    ),
    ("{} already has an account", "{} a déjà un compte"),
    (
        "You have {} live keys: revoke one first.",
        "Vous avez {} clés actives : révoquez-en une d’abord.",
    ),
    (
        "Use at least {} characters.",
        "Utilisez au moins {} caractères.",
    ),
    ("Third-party reporting", "Rapports à des tiers"),
    (
        "A feed link lets a third party (a utility, an incentive programme) download your systems' monthly production as CSV, without an account. Revoke it when the arrangement ends.",
        "Un lien de flux permet à un tiers (un gestionnaire de réseau, un programme d’incitation) de télécharger la production mensuelle de vos systèmes en CSV, sans compte. Révoquez-le à la fin de l’accord.",
    ),
    (
        "New feed link (copy it now, it is not shown again)",
        "Nouveau lien de flux (copiez-le maintenant, il ne sera plus affiché)",
    ),
    ("Third party", "Tiers"),
    ("No feed yet.", "Aucun flux pour l’instant."),
    ("Create feed link", "Créer le lien de flux"),
    ("Grid profiles", "Profils réseau"),
    (
        "The interconnection rules a gateway applies to its microinverters. A gateway reports the profile it applied.",
        "Les règles de raccordement qu’une passerelle applique à ses micro-onduleurs. Une passerelle signale le profil qu’elle a appliqué.",
    ),
    ("Profile", "Profil"),
    ("Region", "Région"),
    ("Grid", "Réseau"),
    ("Your gateways", "Vos passerelles"),
    ("Not reported yet", "Pas encore signalé"),
    (
        "Passwords only as argon2 hashes; sessions, invitation links, API keys and feed links only as digests.",
        "Les mots de passe uniquement sous forme d’empreintes argon2 ; les sessions, liens d’invitation, clés d’API et liens de flux uniquement sous forme de condensés.",
    ),
    (
        "Name the third party (1 to 100 characters).",
        "Nommez le tiers (1 à 100 caractères).",
    ),
    ("United States", "États-Unis"),
    ("Canada", "Canada"),
    ("France", "France"),
    ("Germany", "Allemagne"),
    ("Europe", "Europe"),
    ("Great Britain", "Grande-Bretagne"),
    ("Australia and New Zealand", "Australie et Nouvelle-Zélande"),
    ("Brazil", "Brésil"),
    ("South Africa", "Afrique du Sud"),
    ("Japan", "Japon"),
    ("Other 50 Hz grids", "Autres réseaux à 50 Hz"),
    ("Other 60 Hz grids", "Autres réseaux à 60 Hz"),
    ("report feed created", "flux de rapport créé"),
    ("report feed revoked", "flux de rapport révoqué"),
    (
        "Access ends after (UTC day, optional)",
        "Fin de l’accès après le (jour UTC, facultatif)",
    ),
    ("Owner access", "Accès du propriétaire"),
    (
        "This owner cannot get a sign-in: enter an owner, with an e-mail address no other account uses.",
        "Ce propriétaire ne peut pas recevoir d’accès : saisissez un propriétaire dont l’adresse e-mail n’est utilisée par aucun autre compte.",
    ),
    ("owner link created", "lien du propriétaire créé"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_is_honoured() {
        assert_eq!(
            Lang::from_accept_language(Some("fr-FR,fr;q=0.9,en;q=0.8")),
            Lang::Fr
        );
        assert_eq!(Lang::from_accept_language(Some("en-GB,fr;q=0.5")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("de-DE")), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }

    #[test]
    fn numbers_and_dates_follow_the_language() {
        assert_eq!(Lang::En.energy(12_345.0), "12.3 kWh");
        assert_eq!(Lang::Fr.energy(12_345.0), "12,3 kWh");
        let us = 1_795_939_320_000_000; // 2026-11-29 08:02 UTC
        assert_eq!(Lang::En.time(us), "2026-11-29 08:02 UTC");
        assert_eq!(Lang::Fr.time(us), "29/11/2026 08:02 UTC");
        assert_eq!(Lang::Fr.age(3 * 86_400_000_000), "3 j");
    }

    #[test]
    fn every_label_the_pages_compute_has_a_french_entry() {
        use crate::fleet::{STAGES, event_label, service_group, status_label};
        use crate::pages::activations::{MONTHS, step_label};
        use crate::pages::role_label;
        use crate::pages::systems::Column;
        use sunfleet_engine::registry::{ACTIVATION_STEPS, UserRole};
        let mut labels: Vec<String> = Vec::new();
        for status in [
            "normal",
            "comm",
            "production_off",
            "micro",
            "power",
            "meter",
            "meter_issue",
            "battery",
            "storage_idle",
            "deactivated",
            "retired",
            "not_monitored",
        ] {
            labels.push(status_label(status).to_owned());
        }
        labels.extend(STAGES.iter().map(|(_, label)| label.to_string()));
        labels.extend(
            ACTIVATION_STEPS
                .iter()
                .map(|(step, _)| step_label(step).to_owned()),
        );
        labels.extend(UserRole::ALL.iter().map(|r| role_label(*r).to_owned()));
        labels.extend(Column::ALL.iter().map(|c| c.heading().to_owned()));
        labels.extend(MONTHS.iter().map(|m| m.to_string()));
        labels.extend(
            sunfleet_engine::grid_profiles::GRID_PROFILES
                .iter()
                .map(|p| p.region.to_owned()),
        );
        labels.extend(
            (1..=64)
                .filter_map(sunfleet_engine::telemetry::EventKind::from_number)
                .map(|k| event_label(k.code())),
        );
        for code in [
            "gateway_not_reporting",
            "production_off",
            "micro_not_reporting",
            "production_issue",
            "meter_not_reporting",
            "meter_issue",
            "battery_not_reporting",
        ] {
            labels.push(event_label(code));
        }
        for state in sunfleet_engine::registry::RequestState::ALL {
            labels.push(service_group(state.code()).to_owned());
        }
        labels.extend(
            [
                "info",
                "low",
                "medium",
                "high",
                "residential",
                "commercial",
                "never",
                "until revoked",
            ]
            .map(String::from),
        );
        let missing: Vec<&String> = labels
            .iter()
            .filter(|l| !french().contains_key(l.as_str()))
            .collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }

    #[test]
    fn no_wording_is_translated_twice() {
        let mut seen = std::collections::HashSet::new();
        let twice: Vec<_> = FRENCH_TABLES
            .iter()
            .flat_map(|t| t.iter())
            .filter(|(english, _)| !seen.insert(*english))
            .collect();
        assert!(twice.is_empty(), "in two tables: {twice:?}");
    }

    #[test]
    fn every_label_the_system_pages_compute_has_a_french_entry() {
        use crate::pages::system::{TABS, graph, reports, services};
        use crate::weather::Sky;
        let mut labels: Vec<&str> = TABS.iter().map(|(_, label, _)| *label).collect();
        labels.extend(graph::GRANULARITIES.iter().map(|(_, l)| *l));
        labels.extend(reports::REPORTS.iter().map(|(_, l)| *l));
        labels.extend(reports::GRANULARITIES.iter().map(|(_, l)| *l));
        labels.extend(services::PERMIT_TYPES.iter().map(|(_, l)| *l));
        for code in [
            "return",
            "replacement",
            "permit",
            "incentive",
            "labor_claim",
            "x",
        ] {
            labels.push(services::kind_label(code));
        }
        for state in sunfleet_engine::registry::RequestState::ALL {
            labels.push(services::state_label(state.code()));
        }
        labels.push(services::state_label("x"));
        labels.extend([Sky::Clear, Sky::PartlyCloudy, Sky::Overcast].map(Sky::label));
        let missing: Vec<_> = labels
            .into_iter()
            .filter(|l| !french().contains_key(l))
            .collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }

    #[test]
    fn every_wording_in_the_templates_has_a_french_entry() {
        let mut folders = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates"
        ))];
        let mut files = Vec::new();
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let mut missing = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            // Wordings are written `chrome.t("…")` or `lang.t("…")`.
            for piece in text.split(".t(\"").skip(1) {
                let key = &piece[..piece.find("\")").unwrap()];
                if !french().contains_key(key) {
                    missing.push(format!("{}: {key:?}", path.display()));
                }
            }
        }
        assert!(missing.is_empty(), "no French for:\n{}", missing.join("\n"));
    }
}
