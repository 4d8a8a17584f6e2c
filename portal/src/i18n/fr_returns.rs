//! French for self-service (the settings section, the return request R1) and a service
//! request's page with its status history. The guide's own French names the entries
//! ("Demande de retour", "Installer le remplacement", "Remplacer la passerelle").

pub const FRENCH: &[(&str, &str)] = &[
    // The settings section.
    ("Self-service", "Libre-service"),
    ("Self Service", "Libre-service"),
    (
        "Request returns, install replacement equipment or replace an IQ Gateway yourself.",
        "Demandez des retours, installez des équipements de remplacement ou remplacez une passerelle IQ Gateway vous-même.",
    ),
    (
        "Submit a microinverter or AC battery or IQ System Controller or IQ Battery or IQ Battery PCU warranty return request.",
        "Soumettre une demande de retour sous garantie d’un micro-onduleur, d’une batterie AC, d’un IQ System Controller, d’une IQ Battery ou d’un PCU d’IQ Battery.",
    ),
    ("Request Return", "Demande de retour"),
    (
        "Install a replacement microinverter or AC Battery.",
        "Installer un micro-onduleur ou une batterie AC de remplacement.",
    ),
    ("Install Replacement", "Installer le remplacement"),
    (
        "Retire a gateway that has reported and provision the new one, with the devices that reported to the old one.",
        "Mettre hors service une passerelle qui a communiqué et approvisionner la nouvelle, avec les appareils qui communiquaient avec l’ancienne.",
    ),
    ("Replace Gateway", "Remplacer la passerelle"),
    (
        "Return requests of this system",
        "Demandes de retour de ce système",
    ),
    (
        "No return request yet.",
        "Aucune demande de retour pour l’instant.",
    ),
    // The return form.
    ("Shipping details", "Détails de livraison"),
    (
        "Shipment receiver (details of the person who is expected to receive the shipment at the shipping address)",
        "Destinataire de l’envoi (coordonnées de la personne qui doit recevoir l’envoi à l’adresse de livraison)",
    ),
    ("Select one", "Sélectionner"),
    (
        "Someone else (type the name below)",
        "Une autre personne (saisir son nom ci-dessous)",
    ),
    (
        "Receiver's name, when someone else receives it",
        "Nom du destinataire, si c’est une autre personne",
    ),
    ("Shipping address", "Adresse de livraison"),
    (
        "Shipping address (address where the new replacement device will be shipped)",
        "Adresse de livraison (adresse où l’appareil de remplacement sera expédié)",
    ),
    (
        "We are unable to ship to PO Boxes, apologies for any inconvenience.",
        "Nous ne pouvons pas livrer dans une boîte postale, veuillez nous excuser pour la gêne occasionnée.",
    ),
    ("The system's site", "Le site du système"),
    ("The installer's office", "Les locaux de l’installateur"),
    (
        "Another address (type it below)",
        "Une autre adresse (la saisir ci-dessous)",
    ),
    ("Another address", "Autre adresse"),
    ("Select device type", "Sélectionner le type d’appareil"),
    ("Select device(s)", "Sélectionner le ou les appareils"),
    ("Enter a serial number ...", "Saisir un numéro de série…"),
    (
        "Devices added to the return (untick one to leave it out):",
        "Appareils ajoutés au retour (décocher pour en retirer un) :",
    ),
    (
        "Or type the serial numbers, separated by commas",
        "Ou saisir les numéros de série, séparés par des virgules",
    ),
    (
        "A member of the manufacturer's team handles the request and follows up; its status shows on the request's page and on the dashboard.",
        "Un membre de l’équipe du fabricant traite la demande et assure le suivi ; son état s’affiche sur la page de la demande et sur le tableau de bord.",
    ),
    ("Submit", "Soumettre"),
    ("Add", "Ajouter"),
    (
        "No device of this type matches.",
        "Aucun appareil de ce type ne correspond.",
    ),
    // Device types.
    ("AC Battery", "Batterie AC"),
    ("IQ System Controller", "IQ System Controller"),
    ("IQ Battery", "IQ Battery"),
    ("IQ Battery PCU", "PCU d’IQ Battery"),
    ("Device type", "Type d’appareil"),
    // The form's and the registry's refusals.
    (
        "This system has no owner entered: choose the installer or type a name.",
        "Aucun propriétaire n’est saisi pour ce système : choisissez l’installateur ou saisissez un nom.",
    ),
    (
        "Choose who receives the shipment, or type their name.",
        "Choisissez qui reçoit l’envoi, ou saisissez son nom.",
    ),
    (
        "Enter the address where the replacement is to be shipped.",
        "Saisissez l’adresse où le remplacement doit être expédié.",
    ),
    ("Choose the device type.", "Choisissez le type d’appareil."),
    (
        "“{}” is not a serial number: serial numbers have up to 12 digits.",
        "« {} » n’est pas un numéro de série : un numéro de série a au plus 12 chiffres.",
    ),
    (
        "Add at least one device: search for its serial number, or type serial numbers separated by commas.",
        "Ajoutez au moins un appareil : recherchez son numéro de série, ou saisissez des numéros de série séparés par des virgules.",
    ),
    (
        "We are unable to ship to PO Boxes: “{}” is a post office box. Enter a street address where the shipment can be handed over.",
        "Nous ne pouvons pas livrer dans une boîte postale : « {} » est une boîte postale. Saisissez une adresse postale où l’envoi peut être remis en main propre.",
    ),
    (
        "At most {} devices per return ({} given): file several returns.",
        "Au plus {} appareils par retour ({} saisis) : faites plusieurs demandes.",
    ),
    (
        "{}: no device has this serial number.",
        "{} : aucun appareil n’a ce numéro de série.",
    ),
    (
        "{}: this device belongs to another system, not this one.",
        "{} : cet appareil appartient à un autre système, pas à celui-ci.",
    ),
    (
        "{}: this device was retired; only devices in service can be returned.",
        "{} : cet appareil a été mis hors service ; seuls les appareils en service peuvent être retournés.",
    ),
    (
        "{}: this device is of type {} ({}), not {}: choose its device type, or remove it.",
        "{} : cet appareil est de type {} ({}), pas {} : choisissez son type d’appareil, ou retirez-le.",
    ),
    (
        "{}: this device is already being returned under {}.",
        "{} : cet appareil est déjà en cours de retour sous {}.",
    ),
    // A service request's page.
    ("Service request", "Demande de service"),
    ("Shipment receiver", "Destinataire de l’envoi"),
    (
        "Claim the labour for this unit",
        "Demander le remboursement de la main-d’œuvre pour cet appareil",
    ),
    (
        "Labour claims for this return",
        "Demandes de remboursement de main-d’œuvre pour ce retour",
    ),
    ("Status history", "Historique des états"),
    ("By", "Par"),
    ("Note", "Note"),
    ("Change the status", "Changer l’état"),
    ("New status", "Nouvel état"),
    ("Note (optional)", "Note (facultative)"),
    ("Change status", "Changer l’état de la demande"),
    (
        "Request {} filed: the manufacturer's team follows it up; its status shows here, on the dashboard and on the Services page.",
        "Demande {} déposée : l’équipe du fabricant en assure le suivi ; son état s’affiche ici, sur le tableau de bord et sur la page Services.",
    ),
    ("Status changed to {}.", "État changé en {}."),
    (
        "No service request {} exists.",
        "La demande de service {} n’existe pas.",
    ),
    (
        "none: its history is complete",
        "aucun : son historique est terminé",
    ),
    (
        "{} is {}; it cannot become {} (possible next statuses: {}). Nothing was changed.",
        "{} est à l’état {} ; elle ne peut pas passer à l’état {} (états suivants possibles : {}). Rien n’a été modifié.",
    ),
    (
        "Unknown status {}: choose one of the statuses offered.",
        "État inconnu {} : choisissez l’un des états proposés.",
    ),
    (
        "The note has at most {} characters.",
        "La note comporte au plus {} caractères.",
    ),
    // The labour claim that follows a return.
    (
        "This claim follows return request",
        "Cette demande fait suite à la demande de retour",
    ),
    (
        "Return request {} does not list this unit: choose one of its devices.",
        "La demande de retour {} ne comprend pas cet appareil : choisissez l’un de ses appareils.",
    ),
    (
        "This return request is not one of this system's (or it was rejected).",
        "Cette demande de retour n’est pas l’une de celles de ce système (ou elle a été rejetée).",
    ),
];
