//! French for the system diagnostics page (C7), its tasks and its refusals.

pub const FRENCH: &[(&str, &str)] = &[
    ("Running", "En cours"),
    (
        "Enter the serial number of the microinverter to provision.",
        "Saisissez le numéro de série du micro-onduleur à approvisionner.",
    ),
    (
        "Serial number {} is entered twice: nothing was queued.",
        "Le numéro de série {} est saisi deux fois : rien n'a été mis en file.",
    ),
    (
        "Consumption meter state",
        "État du compteur de consommation",
    ),
    ("Choose a task.", "Choisissez une tâche."),
    (
        "Choose the gateway that is to run the task.",
        "Choisissez la passerelle qui doit exécuter la tâche.",
    ),
    (
        "This system has no consumption meter: there is no meter state to change.",
        "Ce système n'a pas de compteur de consommation : il n'y a pas d'état de compteur à changer.",
    ),
    (
        "Choose the consumption meter state: Net or Total.",
        "Choisissez l'état du compteur de consommation : Net ou Total.",
    ),
    (
        "Choose a grid profile from the list.",
        "Choisissez un profil réseau dans la liste.",
    ),
    (
        "Net (load with solar)",
        "Net (consommation avec le solaire)",
    ),
    ("Total (load only)", "Total (consommation seule)"),
    ("not reported yet", "pas encore signalé"),
    (
        "Task {} queued: its state follows below.",
        "Tâche {} mise en file : son état suit ci-dessous.",
    ),
    ("System diagnostics", "Diagnostic du système"),
    (
        "Each task goes to the gateway you choose, which runs it and reports back: queued, sent, running, then succeeded or failed with the gateway's message.",
        "Chaque tâche part vers la passerelle choisie, qui l'exécute et rend compte : en file, envoyée, en cours, puis réussie ou échouée avec le message de la passerelle.",
    ),
    (
        "This system has no gateway in service: there is nothing to send a task to.",
        "Ce système n'a aucune passerelle en service : aucune tâche ne peut être envoyée.",
    ),
    ("Select task", "Sélectionner une tâche"),
    (
        "Serial numbers (several separated by commas)",
        "Numéros de série (plusieurs, séparés par des virgules)",
    ),
    ("Now", "Actuellement"),
    (
        "Meter readings change meaning from the time the gateway applies the new state.",
        "Les mesures du compteur changent de sens à partir du moment où la passerelle applique le nouvel état.",
    ),
    (
        "This system has no consumption meter.",
        "Ce système n'a pas de compteur de consommation.",
    ),
    (
        "A gateway runs a production change within about 30 minutes of receiving it; over a cellular link, allow an hour or more. While production is disabled, batteries neither charge nor discharge.",
        "Une passerelle applique un changement de production dans les 30 minutes environ après l'avoir reçu ; par le réseau mobile, comptez une heure ou plus. Tant que la production est désactivée, les batteries ne se chargent ni ne se déchargent.",
    ),
];
