from recgym.cli import main

main()
