from tokenpulse.cli import main

main()
