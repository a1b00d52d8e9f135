// swift-tools-version:5.5
// SwiftPM package of librstar: CRStar (system library: module map over rstar.h, linked through
// pkg-config `rstar`, installed by scripts/install.sh PREFIX) and RStar (the Swift API).
import PackageDescription

let package = Package(
    name: "RStar",
    platforms: [.macOS(.v10_15), .iOS(.v13)],
    products: [.library(name: "RStar", targets: ["RStar"])],
    targets: [
        .systemLibrary(name: "CRStar", path: "Sources/CRStar", pkgConfig: "rstar"),
        .target(name: "RStar", dependencies: ["CRStar"]),
        .testTarget(name: "RStarTests", dependencies: ["RStar"]),
    ]
)
