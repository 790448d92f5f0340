from agent_lightning.cli import main

main()
