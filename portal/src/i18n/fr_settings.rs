//! French for a system's settings (T1–T5): overview, labour reimbursement, installer
//! reference and more, production estimate and threshold, array details and builder. The
//! seed guide's own words are used where it has them ("Détails du champ PV",
//! "Éditeur de champ PV", "Estimation et seuil de production", …).

pub const FRENCH: &[(&str, &str)] = &[
    // Sections.
    ("Settings sections", "Sections des paramètres"),
    ("Overview", "Vue d'ensemble"),
    ("Labor reimbursement", "Remboursement de la main-d'œuvre"),
    (
        "Installer reference and more",
        "Référence de l'installateur et plus",
    ),
    (
        "Production estimate and threshold",
        "Estimation et seuil de production",
    ),
    ("Array details", "Détails du champ PV"),
    (
        "You can see these settings; only the system's installers change them.",
        "Vous pouvez consulter ces paramètres ; seuls les installateurs du système les modifient.",
    ),
    (
        "Saved. The production check ran again: the status shown is current.",
        "Enregistré. Le contrôle de production a été refait : le statut affiché est à jour.",
    ),
    (
        "Saved. The production check runs again in a moment; reload to see the status follow.",
        "Enregistré. Le contrôle de production est refait dans un instant ; rechargez la page pour voir le statut suivre.",
    ),
    // The audit log's actions.
    ("system settings saved", "paramètres du système enregistrés"),
    (
        "production estimate saved",
        "estimation de production enregistrée",
    ),
    ("arrays saved", "champs PV enregistrés"),
    (
        "labor claim submitted",
        "demande de remboursement de main-d'œuvre envoyée",
    ),
    // Overview.
    (
        "The owner's contact details are shown to the installer's people only.",
        "Les coordonnées du propriétaire ne sont montrées qu'aux membres de l'installateur.",
    ),
    (
        "No owner entered yet.",
        "Aucun propriétaire saisi pour l'instant.",
    ),
    ("System ID", "ID du système"),
    ("none", "aucune"),
    ("Other references", "Autres références"),
    ("Coordinates", "Coordonnées"),
    (
        "Change the owner, name or location in the activation form",
        "Modifier le propriétaire, le nom ou l'emplacement dans le formulaire d'activation",
    ),
    // Installer reference and more.
    ("References", "Références"),
    (
        "Other references: a utility, financing or permit number, for finding the system later.",
        "Autres références : un numéro du distributeur, du financement ou du permis, pour retrouver le système plus tard.",
    ),
    ("Installation", "Installation"),
    ("Internet connection", "Connexion Internet"),
    (
        "Microinverter attachment type",
        "Type de fixation du micro-onduleur",
    ),
    ("Not specified", "Non précisé"),
    ("Rack / rail mounted", "Sur rail / châssis"),
    ("Module frame mounted", "Fixé au cadre du module"),
    ("Integrated (AC module)", "Intégré (module AC)"),
    ("Ground mount", "Au sol"),
    ("Permission to operate", "Autorisation d'exploiter"),
    ("Operational as of", "Opérationnel depuis le"),
    ("Not operational yet", "Pas encore opérationnel"),
    (
        "The production threshold is set with the production estimate.",
        "Le seuil de production se règle avec l'estimation de production.",
    ),
    (
        "Weather and production readings",
        "Météo et mesures de production",
    ),
    (
        "Show weather features for this site",
        "Afficher la météo pour ce site",
    ),
    ("Production readings", "Mesures de production"),
    ("Microinverter measurements", "Mesures des micro-onduleurs"),
    ("Production meter", "Compteur de production"),
    (
        "This system has no production meter: production comes from the microinverters.",
        "Ce système n'a pas de compteur de production : la production vient des micro-onduleurs.",
    ),
    (
        "What the system's kiosk view shows.",
        "Ce qu'affiche la vue kiosque du système.",
    ),
    ("Past 7 days energy", "Énergie des 7 derniers jours"),
    ("Energy graph", "Graphique d'énergie"),
    ("Environmental benefits", "Avantages environnementaux"),
    ("System description", "Description du système"),
    (
        "Choose Ethernet, Wi-Fi or cellular.",
        "Choisissez Ethernet, Wi-Fi ou cellulaire.",
    ),
    (
        "Choose one of the attachment types listed.",
        "Choisissez l'un des types de fixation proposés.",
    ),
    (
        "The date is more than a year ahead.",
        "La date est à plus d'un an dans le futur.",
    ),
    ("The date is before 1990.", "La date est antérieure à 1990."),
    (
        "Enter the date the system became operational (YYYY-MM-DD).",
        "Saisissez la date de mise en service du système (AAAA-MM-JJ).",
    ),
    (
        "Say whether the system has permission to operate.",
        "Indiquez si le système a l'autorisation d'exploiter.",
    ),
    (
        "This system has no production meter: production can only come from the microinverters.",
        "Ce système n'a pas de compteur de production : la production ne peut venir que des micro-onduleurs.",
    ),
    (
        "Choose microinverter measurements or the production meter.",
        "Choisissez les mesures des micro-onduleurs ou le compteur de production.",
    ),
    // Production estimate and threshold.
    ("Production check", "Contrôle de la production"),
    (
        "No production issue open.",
        "Aucun problème de production ouvert.",
    ),
    (
        "The check compares production over the chosen period with the estimate reduced by the annual degradation; it judges a system once the period lies after its permission-to-operate date and its first data. Watching a month of production before setting estimates is advised.",
        "Le contrôle compare la production sur la période choisie à l'estimation diminuée de la dégradation annuelle ; il juge un système dès que la période suit sa date d'autorisation d'exploiter et ses premières données. Il est conseillé d'observer un mois de production avant d'établir les estimations.",
    ),
    (
        "Estimated production (kWh per month) for the whole system, or for each array.",
        "Production estimée (kWh par mois) pour l'ensemble du système, ou pour chaque champ PV.",
    ),
    (
        "System-level production estimate",
        "Estimation de production au niveau du système",
    ),
    (
        "Array-level production estimates",
        "Estimations de production au niveau des champs PV",
    ),
    (
        "Array-level estimates need arrays: build them in Array details.",
        "Les estimations par champ PV demandent des champs : créez-les dans Détails du champ PV.",
    ),
    (
        "Annual degradation factor",
        "Facteur de dégradation annuelle",
    ),
    (
        "Percentage to reduce the estimate each year, for the ageing of the modules (%)",
        "Pourcentage de réduction annuelle de l'estimation, pour le vieillissement des modules (%)",
    ),
    ("Production threshold", "Seuil de production"),
    (
        "Show a production issue when the system's production over the period is below this share of the estimate.",
        "Signaler un problème de production quand la production du système sur la période est inférieure à cette part de l'estimation.",
    ),
    ("Time period", "Période"),
    ("90 days", "90 jours"),
    ("30 days", "30 jours"),
    ("% of estimated", "% de l'estimation"),
    (
        "Choose a system-level or an array-level estimate.",
        "Choisissez une estimation au niveau du système ou des champs PV.",
    ),
    (
        "This system has no arrays yet: build them first, or enter a system-level estimate.",
        "Ce système n'a pas encore de champ PV : créez-les d'abord, ou saisissez une estimation au niveau du système.",
    ),
    (
        "Enter the estimate of at least one array, or choose the system-level estimate.",
        "Saisissez l'estimation d'au moins un champ PV, ou choisissez l'estimation au niveau du système.",
    ),
    (
        "A percentage from 0 to 5 (decimals allowed).",
        "Un pourcentage de 0 à 5 (décimales permises).",
    ),
    (
        "Choose a threshold from 50 % to 95 % in steps of 5.",
        "Choisissez un seuil de 50 % à 95 % par pas de 5.",
    ),
    (
        "Choose a period of 30 or 90 days.",
        "Choisissez une période de 30 ou 90 jours.",
    ),
    (
        "The production check is off: the system has no estimate at the level chosen.",
        "Le contrôle de production est désactivé : le système n'a pas d'estimation au niveau choisi.",
    ),
    (
        "The production check waits for the permission-to-operate date (Installer reference and more).",
        "Le contrôle de production attend la date d'autorisation d'exploiter (Référence de l'installateur et plus).",
    ),
    // Labour reimbursement.
    (
        "A reimbursement of the on-site labour of a warranty replacement, separate from the product warranty. To qualify:",
        "Un remboursement de la main-d'œuvre sur site d'un remplacement sous garantie, distinct de la garantie du produit. Conditions :",
    ),
    (
        "the unit is an eligible product: a microinverter or a battery of this system;",
        "l'appareil est un produit éligible : un micro-onduleur ou une batterie de ce système ;",
    ),
    (
        "its defect was detected while it was monitored here;",
        "son défaut a été détecté alors qu'il était surveillé ici ;",
    ),
    (
        "it was installed within two years of the claim date;",
        "il a été installé moins de deux ans avant la date de la demande ;",
    ),
    (
        "it was returned, if a return was asked for;",
        "il a été retourné, si un retour a été demandé ;",
    ),
    (
        "the claim comes within three months of the defect.",
        "la demande arrive dans les trois mois qui suivent le défaut.",
    ),
    (
        "This claim is not eligible; nothing was submitted.",
        "Cette demande n'est pas éligible ; rien n'a été envoyé.",
    ),
    ("Claim", "Demande"),
    ("Device", "Appareil"),
    (
        "Choose a microinverter or battery",
        "Choisissez un micro-onduleur ou une batterie",
    ),
    ("Defect date", "Date du défaut"),
    ("Claim date", "Date de la demande"),
    ("Labour hours", "Heures de main-d'œuvre"),
    (
        "The unit was returned as instructed",
        "L'appareil a été retourné comme demandé",
    ),
    (
        "Description of the defect and the work",
        "Description du défaut et des travaux",
    ),
    ("Submit claim", "Envoyer la demande"),
    ("Claims of this system", "Demandes de ce système"),
    ("No claim yet.", "Aucune demande pour l'instant."),
    ("All service requests", "Toutes les demandes de service"),
    ("Microinverter", "Micro-onduleur"),
    ("Battery", "Batterie"),
    ("retired", "retiré"),
    ("installed", "installé le"),
    (
        "Claim #{} submitted: it is listed with the service requests.",
        "Demande n° {} envoyée : elle figure parmi les demandes de service.",
    ),
    (
        "Not an eligible product: only the system's microinverters and batteries are reimbursed.",
        "Produit non éligible : seuls les micro-onduleurs et les batteries du système sont remboursés.",
    ),
    (
        "Not monitored: this unit never reported to Sunfleet, so no defect was detected while it was monitored.",
        "Non surveillé : cet appareil n'a jamais transmis de données à Sunfleet, aucun défaut n'a donc été détecté sous surveillance.",
    ),
    (
        "Not monitored at the time: the defect date is before the unit first reported ({}).",
        "Non surveillé à cette date : la date du défaut précède les premières données de l'appareil ({}).",
    ),
    (
        "Installed too long ago: the unit was installed on {}, more than two years before the claim (claims were possible until {}).",
        "Installé depuis trop longtemps : l'appareil a été installé le {}, plus de deux ans avant la demande (demandes possibles jusqu'au {}).",
    ),
    (
        "Return not done: the unit was to be returned under RMA {}; send it back first.",
        "Retour non effectué : l'appareil devait être retourné sous le RMA {} ; renvoyez-le d'abord.",
    ),
    (
        "Return not done: the unit was to be returned; send it back first.",
        "Retour non effectué : l'appareil devait être retourné ; renvoyez-le d'abord.",
    ),
    (
        "Too late: claims must come within three months of the defect (by {}).",
        "Trop tard : les demandes doivent arriver dans les trois mois qui suivent le défaut (au plus tard le {}).",
    ),
    (
        "Choose the microinverter or battery the claim is for.",
        "Choisissez le micro-onduleur ou la batterie concerné par la demande.",
    ),
    (
        "The defect date is in the future.",
        "La date du défaut est dans le futur.",
    ),
    (
        "Enter the date the defect was found (YYYY-MM-DD).",
        "Saisissez la date à laquelle le défaut a été constaté (AAAA-MM-JJ).",
    ),
    (
        "Labour hours: a number from 0.25 to 24.",
        "Heures de main-d'œuvre : un nombre de 0,25 à 24.",
    ),
    (
        "Describe the defect and the work done.",
        "Décrivez le défaut et les travaux effectués.",
    ),
    // Array details and builder.
    (
        "Use the array builder to create the virtual solar array.",
        "Utilisez l'éditeur de champ PV pour créer le champ PV virtuel.",
    ),
    ("Array builder", "Éditeur de champ PV"),
    ("← Array details", "← Détails du champ PV"),
    ("Array name", "Nom du champ PV"),
    ("# of modules", "Nombre de modules"),
    ("Azimuth (°)", "Azimut (°)"),
    ("Tilt (°)", "Inclinaison (°)"),
    ("Grid (rows × columns)", "Grille (rangées × colonnes)"),
    ("No arrays yet.", "Aucun champ PV pour l'instant."),
    (
        "microinverter(s) not placed in an array.",
        "micro-onduleur(s) placé(s) dans aucun champ PV.",
    ),
    (
        "Click a microinverter, then the cell where it sits (or drag it there); click a placed one and then the tray to take it off. Without the grid, choose each microinverter's array, row and column in the table. Nothing is saved until you save.",
        "Cliquez sur un micro-onduleur, puis sur la case où il se trouve (ou faites-le glisser) ; cliquez sur un micro-onduleur placé puis sur le bac pour le retirer. Sans la grille, choisissez le champ PV, la rangée et la colonne de chaque micro-onduleur dans le tableau. Rien n'est enregistré avant d'enregistrer.",
    ),
    ("Not placed", "Non placé"),
    ("Rows", "Rangées"),
    ("Delete this array", "Supprimer ce champ PV"),
    ("Array", "Champ PV"),
    ("Row", "Rangée"),
    ("Column", "Colonne"),
    ("Save arrays", "Enregistrer les champs PV"),
    ("New array {}", "Nouveau champ PV {}"),
    (
        "At most {} arrays per system.",
        "Au plus {} champs PV par système.",
    ),
    (
        "{} is on an array you are deleting: move it, or leave it not placed.",
        "{} est sur un champ PV que vous supprimez : déplacez-le, ou laissez-le non placé.",
    ),
    (
        "{}: choose one of the arrays listed.",
        "{} : choisissez l'un des champs PV proposés.",
    ),
    (
        "{} and {} are both in row {}, column {} of {}: one cell holds one microinverter.",
        "{} et {} sont tous deux en rangée {}, colonne {} de {} : une case contient un seul micro-onduleur.",
    ),
    (
        "{} is outside the grid of {}: choose a row from 1 to {} and a column from 1 to {}.",
        "{} est hors de la grille de {} : choisissez une rangée de 1 à {} et une colonne de 1 à {}.",
    ),
    ("Enter the array's name.", "Saisissez le nom du champ PV."),
    (
        "Azimuth: degrees from 0 to 360 (180 faces south).",
        "Azimut : degrés de 0 à 360 (180 fait face au sud).",
    ),
    (
        "Tilt: degrees from 0 (flat) to 90.",
        "Inclinaison : degrés de 0 (à plat) à 90.",
    ),
    (
        "Rows: a whole number from 1 to {}.",
        "Rangées : un nombre entier de 1 à {}.",
    ),
    (
        "Columns: a whole number from 1 to {}.",
        "Colonnes : un nombre entier de 1 à {}.",
    ),
];

#[cfg(test)]
mod tests {
    use crate::pages::system::settings::{
        ATTACHMENT_TYPES, CONNECTIONS, PRODUCTION_SOURCES, SECTIONS,
    };

    #[test]
    fn every_label_the_settings_compute_has_a_french_entry() {
        let french = super::super::french();
        let labels = SECTIONS
            .iter()
            .map(|(_, label, _)| *label)
            .chain(CONNECTIONS.iter().map(|(_, label)| *label))
            .chain(ATTACHMENT_TYPES.iter().map(|(_, label)| *label))
            .chain(PRODUCTION_SOURCES.iter().map(|(_, label)| *label));
        let missing: Vec<&str> = labels.filter(|l| !french.contains_key(l)).collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }
}
