from fmnist_pl.cli import main

main()
