//! French for mail to owners (C1, C2): the owner-access button, the owner's details on
//! the settings overview, the mails themselves, and the platform administrator's mail
//! page.

pub const FRENCH: &[(&str, &str)] = &[
    // Activation form: owner access (C1).
    (
        "The owner gets an e-mail with a one-time link (valid 7 days) that sets their password; they then sign in with their e-mail address and see their systems. Sending again replaces the previous link.",
        "Le propriétaire reçoit un e-mail avec un lien à usage unique (valable 7 jours) qui définit son mot de passe ; il se connecte ensuite avec son adresse e-mail et voit ses systèmes. Un nouvel envoi remplace le lien précédent.",
    ),
    ("System access sent to", "Accès au système envoyé à"),
    (
        "Send system access to owner",
        "Envoyer l'accès au système au propriétaire",
    ),
    // Settings overview: the owner's details (C2).
    (
        "Language of the owner's e-mails",
        "Langue des e-mails du propriétaire",
    ),
    (
        "The owner is e-mailed the changed details, at the old and the new address when the e-mail changes; their sign-in follows the new address. An owner's details are the same on all their systems.",
        "Le propriétaire reçoit par e-mail les informations modifiées, à l’ancienne et à la nouvelle adresse si l’e-mail change ; sa connexion suit la nouvelle adresse. Les informations d’un propriétaire sont les mêmes sur tous ses systèmes.",
    ),
    (
        "Save owner details",
        "Sauvegarder les informations du propriétaire",
    ),
    (
        "Give the system another owner, or change its name or location, in the activation form",
        "Donner un autre propriétaire au système, ou modifier son nom ou son emplacement, dans le formulaire d’activation",
    ),
    (
        "Saved. The owner was e-mailed the changed details.",
        "Enregistré. Le propriétaire a reçu par e-mail les informations modifiées.",
    ),
    (
        "Saved. The owner was e-mailed the changed details, at the new and at the previous address.",
        "Enregistré. Le propriétaire a reçu par e-mail les informations modifiées, à la nouvelle et à l’ancienne adresse.",
    ),
    (
        "Nothing changed, so no e-mail was sent.",
        "Rien n’a changé : aucun e-mail n’a été envoyé.",
    ),
    (
        "A phone number has digits, spaces and + ( ) - . / only.",
        "Un numéro de téléphone ne contient que des chiffres, des espaces et + ( ) - . /",
    ),
    (
        "Choose English or French for the owner's e-mails.",
        "Choisissez l’anglais ou le français pour les e-mails du propriétaire.",
    ),
    (
        "{} already signs in to another Sunfleet account: enter another address.",
        "{} sert déjà à se connecter à un autre compte Sunfleet : saisissez une autre adresse.",
    ),
    (
        "{} is the e-mail of another owner: to make them this system's owner, use the activation form.",
        "{} est l’e-mail d’un autre propriétaire : pour en faire le propriétaire de ce système, utilisez le formulaire d’activation.",
    ),
    // The audit log's actions.
    ("owner access sent", "accès envoyé au propriétaire"),
    ("owner updated", "propriétaire mis à jour"),
    // The mails.
    (
        "Your access to your solar system {}",
        "Votre accès à votre installation solaire {}",
    ),
    (
        "Your owner details for {} were updated",
        "Vos coordonnées de propriétaire pour {} ont été mises à jour",
    ),
    ("Hello,", "Bonjour,"),
    (
        "Your installer gives you access to Sunfleet, where you follow the production of your solar system:",
        "Votre installateur vous donne accès à Sunfleet, où vous suivez la production de votre installation solaire :",
    ),
    (
        "Choose your password with this one-time link (it works for 7 days):",
        "Choisissez votre mot de passe avec ce lien à usage unique (valable 7 jours) :",
    ),
    (
        "Then sign in with your e-mail address and that password:",
        "Connectez-vous ensuite avec votre adresse e-mail et ce mot de passe :",
    ),
    (
        "If you did not expect this e-mail, ignore it: nothing happens until the link is used.",
        "Si vous n’attendiez pas cet e-mail, ignorez-le : rien ne se passe tant que le lien n’est pas utilisé.",
    ),
    ("Your installer", "Votre installateur"),
    (
        "Your details as the owner of this solar system were updated:",
        "Vos coordonnées de propriétaire de cette installation solaire ont été mises à jour :",
    ),
    ("They now read:", "Elles sont désormais :"),
    ("Changed", "Modifié"),
    (
        "Sunfleet now writes to the new address above; this one no longer receives its mail, and sign-in links sent to it no longer work.",
        "Sunfleet écrit désormais à la nouvelle adresse ci-dessus ; celle-ci ne reçoit plus ses e-mails, et les liens de connexion qui lui ont été envoyés ne fonctionnent plus.",
    ),
    (
        "This address replaces the previous one, which was told of the change too:",
        "Cette adresse remplace la précédente, qui a aussi été informée du changement :",
    ),
    (
        "If this change is not right, contact your installer:",
        "Si ce changement n’est pas correct, contactez votre installateur :",
    ),
    // The platform administrator's mail page.
    ("Mail", "E-mails"),
    ("← Mail", "← E-mails"),
    (
        "Mail is delivered by SMTP through",
        "Les e-mails sont remis par SMTP via",
    ),
    (
        "No SMTP server is configured (serve --smtp-url): mail stays here, not delivered. Each mail's body, one-time links included, is on its page.",
        "Aucun serveur SMTP n’est configuré (serve --smtp-url) : les e-mails restent ici, non remis. Le contenu de chaque e-mail, liens à usage unique compris, est sur sa page.",
    ),
    (
        "Every mail the platform writes to people, newest first. One-time links leave a mail's stored body once it is delivered.",
        "Chaque e-mail que la plateforme écrit, du plus récent au plus ancien. Les liens à usage unique sont retirés du contenu enregistré une fois l’e-mail remis.",
    ),
    ("No mail on this page.", "Aucun e-mail sur cette page."),
    ("Written", "Écrit le"),
    ("Recipient", "Destinataire"),
    ("Kind of mail", "Type d’e-mail"),
    ("Delivery", "Remise"),
    ("Last error", "Dernière erreur"),
    ("Attempts", "Tentatives"),
    ("mail(s)", "e-mail(s)"),
    ("Waiting to be sent", "En attente d’envoi"),
    ("Being sent", "En cours d’envoi"),
    ("Sent {}", "Envoyé le {}"),
    (
        "{} failed attempt(s); next try {}",
        "{} tentative(s) échouée(s) ; prochain essai le {}",
    ),
    (
        "Given up after {} attempt(s)",
        "Abandonné après {} tentative(s)",
    ),
    (
        "Not delivered: no SMTP server configured",
        "Non remis : aucun serveur SMTP configuré",
    ),
    (
        "Owner's access (welcome)",
        "Accès du propriétaire (bienvenue)",
    ),
    (
        "Owner's details changed",
        "Coordonnées du propriétaire modifiées",
    ),
];
