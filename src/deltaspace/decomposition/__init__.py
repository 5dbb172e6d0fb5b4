"""The decomposition paper ("See Further for PEFT by Standing on the Shoulders of Decomposition"):
its table rows as registry methods with options (:mod:`.paper`), the ‰Params accounting, and the
CPU-scale synthetic study of Propositions 1-2 and MPC (:mod:`.synthetic`)."""
