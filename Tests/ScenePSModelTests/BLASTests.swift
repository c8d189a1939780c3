import XCTest
@testable import ScenePSModel
