//! French for the self-service replacement pages (R2 install replacement, R3 gateway
//! replacement) and what a device's page says about replacements.

pub const FRENCH: &[(&str, &str)] = &[
    // Install replacement (R2).
    ("Install replacement", "Installer le remplacement"),
    (
        "Install a replacement microinverter or AC battery: the original unit is retired, the new one takes its place in the array and is provisioned through the gateway the original reported to, and its graphs and lifetime energy continue the original's.",
        "Installer un micro-onduleur ou une batterie CA de remplacement : l’appareil d’origine est mis hors service, le nouveau prend sa place dans le champ PV et est approvisionné par la passerelle à laquelle l’appareil d’origine était rattaché, et ses graphiques et son énergie totale prolongent ceux de l’appareil d’origine.",
    ),
    (
        "Enter the original device's serial number (the list offers this system's microinverters and batteries).",
        "Saisir le numéro de série de l’appareil d’origine (la liste propose les micro-onduleurs et batteries de ce système).",
    ),
    (
        "Enter the replacement's serial number.",
        "Saisir le numéro de série du remplacement.",
    ),
    (
        "Submit. Several pairs are recorded together, or none of them.",
        "Soumettre. Plusieurs paires sont enregistrées ensemble, ou aucune.",
    ),
    (
        "Enter original device number",
        "Saisir le numéro de l’appareil d’origine",
    ),
    (
        "Enter replacement number",
        "Saisir le numéro de remplacement",
    ),
    ("Replace another device", "Remplacer un autre appareil"),
    ("Recorded now", "Enregistré à l’instant"),
    ("provisioning task", "tâche d’approvisionnement"),
    ("on gateway", "sur la passerelle"),
    (
        "the gateway's task list",
        "la liste des tâches de la passerelle",
    ),
    ("Replacements of this system", "Remplacements de ce système"),
    ("Original", "Appareil d’origine"),
    ("Place", "Emplacement"),
    ("Provisioning task", "Tâche d’approvisionnement"),
    ("First report", "Premier rapport"),
    ("No replacement yet.", "Aucun remplacement pour l’instant."),
    ("not yet", "pas encore"),
    ("{}, row {}, column {}", "{}, rangée {}, colonne {}"),
    ("row {}, column {}", "rangée {}, colonne {}"),
    (
        "Replacement recorded: the original units are retired, the new ones took their places, and each gateway was asked to provision them. Their history continues the originals'.",
        "Remplacement enregistré : les appareils d’origine sont mis hors service, les nouveaux ont pris leur place et chaque passerelle a été chargée de les approvisionner. Leur historique prolonge celui des appareils d’origine.",
    ),
    (
        "{} is not a serial number: enter the 12 digits on the unit's label.",
        "{} n’est pas un numéro de série : saisir les 12 chiffres de l’étiquette de l’appareil.",
    ),
    (
        "Enter the original device's serial number.",
        "Saisir le numéro de série de l’appareil d’origine.",
    ),
    (
        "Enter the replacement's serial number (on its label).",
        "Saisir le numéro de série du remplacement (sur son étiquette).",
    ),
    (
        "The replacement's serial number is the original's: enter the new unit's.",
        "Le numéro de série du remplacement est celui de l’appareil d’origine : saisir celui du nouvel appareil.",
    ),
    (
        "{} is listed twice as an original device.",
        "{} figure deux fois comme appareil d’origine.",
    ),
    (
        "{} is listed twice as a replacement.",
        "{} figure deux fois comme remplacement.",
    ),
    (
        "No device has serial number {}: check the original unit's label.",
        "Aucun appareil n’a le numéro de série {} : vérifier l’étiquette de l’appareil d’origine.",
    ),
    (
        "Serial number {} is not a device of this system: only this system's microinverters and AC batteries are replaced here.",
        "Le numéro de série {} n’est pas un appareil de ce système : seuls les micro-onduleurs et batteries CA de ce système sont remplacés ici.",
    ),
    (
        "{} is a {}: only microinverters and AC batteries are replaced here (a gateway has its own replacement page).",
        "{} est un(e) {} : seuls les micro-onduleurs et batteries CA sont remplacés ici (une passerelle a sa propre page de remplacement).",
    ),
    (
        "{} was retired already: it was replaced by {}.",
        "{} est déjà hors service : il a été remplacé par {}.",
    ),
    ("{} was retired already.", "{} est déjà hors service."),
    (
        "Replacement serial number {} is already registered to this system (a {}).",
        "Le numéro de série de remplacement {} est déjà enregistré dans ce système (un(e) {}).",
    ),
    (
        "Replacement serial number {} is already registered to another system: a device belongs to one system only.",
        "Le numéro de série de remplacement {} est déjà enregistré dans un autre système : un appareil n’appartient qu’à un seul système.",
    ),
    (
        "Replacement serial number {} is already being provisioned on this system (task {}).",
        "Le numéro de série de remplacement {} est déjà en cours d’approvisionnement sur ce système (tâche {}).",
    ),
    (
        "Replacement serial number {} is already being provisioned on another system.",
        "Le numéro de série de remplacement {} est déjà en cours d’approvisionnement sur un autre système.",
    ),
    (
        "This system has no gateway in service to provision the replacement.",
        "Ce système n’a aucune passerelle en service pour approvisionner le remplacement.",
    ),
    ("Nothing was changed.", "Rien n’a été modifié."),
    (
        "Please correct the pairs marked below.",
        "Veuillez corriger les paires signalées ci-dessous.",
    ),
    (
        "Enter the original device's serial number and the replacement's.",
        "Saisir le numéro de série de l’appareil d’origine et celui du remplacement.",
    ),
    (
        "A pair was refused (marked below).",
        "Une paire a été refusée (signalée ci-dessous).",
    ),
    // Gateway replacement (R3).
    ("Gateway replacement", "Remplacement de la passerelle"),
    (
        "To replace a gateway that has reported to Sunfleet:",
        "Pour remplacer une passerelle qui a communiqué avec Sunfleet :",
    ),
    (
        "Check that the system's data is up to date, then disconnect the old gateway.",
        "Vérifier que les données du système sont à jour, puis déconnecter l’ancienne passerelle.",
    ),
    (
        "Choose the old gateway and enter the new gateway's serial number below, then install the new gateway and connect it to the internet.",
        "Choisir l’ancienne passerelle et saisir ci-dessous le numéro de série de la nouvelle, puis installer la nouvelle passerelle et la connecter à Internet.",
    ),
    (
        "Once the new gateway has reported, the old one is retired and the microinverters, AC batteries and meters that reported to it move to the new one. Nothing they report in between is lost.",
        "Dès que la nouvelle passerelle a communiqué, l’ancienne est mise hors service et les micro-onduleurs, batteries CA et compteurs qui lui étaient rattachés passent à la nouvelle. Rien de ce qu’ils transmettent entre-temps n’est perdu.",
    ),
    (
        "Batteries must then be provisioned again with the new gateway: this page lists them and queues the task.",
        "Les batteries doivent ensuite être approvisionnées à nouveau avec la nouvelle passerelle : cette page les liste et met la tâche en file d’attente.",
    ),
    (
        "This system has no gateway in service.",
        "Ce système n’a aucune passerelle en service.",
    ),
    ("Old gateway", "Ancienne passerelle"),
    ("New gateway", "Nouvelle passerelle"),
    (
        "This retires the old gateway and provisions the new one with the microinverters, AC batteries and meters that reported to the old one.",
        "Cela met l’ancienne passerelle hors service et approvisionne la nouvelle avec les micro-onduleurs, batteries CA et compteurs rattachés à l’ancienne.",
    ),
    ("Replace gateway", "Remplacer la passerelle"),
    (
        "Gateway replacements of this system",
        "Remplacements de passerelle de ce système",
    ),
    ("What moved", "Ce qui a été transféré"),
    ("Pending", "En attente"),
    ("Done", "Terminé"),
    (
        "No gateway replacement yet.",
        "Aucun remplacement de passerelle pour l’instant.",
    ),
    (
        "Batteries to provision again",
        "Batteries à approvisionner à nouveau",
    ),
    ("Moved", "Transférée"),
    (
        "Provision the batteries on gateway",
        "Approvisionner les batteries sur la passerelle",
    ),
    ("replacement pending", "remplacement en attente"),
    (
        "Waiting for gateway {} to report. Once its first data is stored, gateway {} is retired and its devices move to it.",
        "En attente du premier rapport de la passerelle {}. Dès que ses premières données sont enregistrées, la passerelle {} est mise hors service et ses appareils lui sont transférés.",
    ),
    (
        "Done {}: gateway {} is retired.",
        "Terminé le {} : la passerelle {} est hors service.",
    ),
    (
        "{} microinverter(s), {} meter(s) and {} battery(ies) moved to the new gateway; {} unfinished task(s) of the old gateway cancelled.",
        "{} micro-onduleur(s), {} compteur(s) et {} batterie(s) transférés à la nouvelle passerelle ; {} tâche(s) inachevée(s) de l’ancienne passerelle annulée(s).",
    ),
    (
        "Gateway replacement recorded: it completes by itself once the new gateway has reported (see below).",
        "Remplacement de passerelle enregistré : il s’achève de lui-même dès que la nouvelle passerelle a communiqué (voir ci-dessous).",
    ),
    (
        "Task {} queued: the new gateway provisions the batteries when it runs it.",
        "Tâche {} en file d’attente : la nouvelle passerelle approvisionne les batteries en l’exécutant.",
    ),
    (
        "The chosen gateway is not one of this system's gateways.",
        "La passerelle choisie n’est pas une passerelle de ce système.",
    ),
    (
        "The chosen gateway is retired already.",
        "La passerelle choisie est déjà hors service.",
    ),
    (
        "This gateway is already being replaced by {}: the replacement completes once that gateway reports.",
        "Cette passerelle est déjà en cours de remplacement par {} : le remplacement s’achève dès que celle-ci communique.",
    ),
    (
        "The new gateway's serial number is the old one's: enter the new gateway's.",
        "Le numéro de série de la nouvelle passerelle est celui de l’ancienne : saisir celui de la nouvelle.",
    ),
    (
        "Serial number {} is already registered to this system (a {}).",
        "Le numéro de série {} est déjà enregistré dans ce système (un(e) {}).",
    ),
    (
        "Serial number {} is already registered to another system: a device belongs to one system only.",
        "Le numéro de série {} est déjà enregistré dans un autre système : un appareil n’appartient qu’à un seul système.",
    ),
    (
        "Serial number {} is being provisioned as a microinverter (task {}).",
        "Le numéro de série {} est en cours d’approvisionnement comme micro-onduleur (tâche {}).",
    ),
    ("Choose the old gateway.", "Choisir l’ancienne passerelle."),
    (
        "{} is not a gateway serial number: enter the 12 digits on the new gateway's label.",
        "{} n’est pas un numéro de série de passerelle : saisir les 12 chiffres de l’étiquette de la nouvelle passerelle.",
    ),
    // A device's page.
    ("Replaced by", "Remplacé par"),
    ("Replaces", "Remplace"),
    ("Reports through gateway", "Rattaché à la passerelle"),
    ("Provisioning", "Approvisionnement"),
    (
        "moved to a new gateway on {}: to provision again with it",
        "transférée à une nouvelle passerelle le {} : à approvisionner à nouveau avec elle",
    ),
    (
        "To provision again with its new gateway",
        "À approvisionner à nouveau avec sa nouvelle passerelle",
    ),
];
